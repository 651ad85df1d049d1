//! netdeploy's integration tests: one binary with a module per area, so the suite links once.

mod tftp;
