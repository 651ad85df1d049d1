//! Starts every listener of `netdeploy serve`.
