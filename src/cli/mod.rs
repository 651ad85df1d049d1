//! Command implementations of the `netdeploy` binary.

pub mod catalog;
pub mod locate;
