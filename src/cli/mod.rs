//! Command implementations of the `netdeploy` binary, one file per command. They open the
//! database in the data directory directly; SQLite lets them run beside a running server, whose
//! next decision sees the change. Checks live in the admin operations (`netdeploy::admin`),
//! which the HTTP admin API shares.

pub mod alert;
pub mod boot_image;
pub mod collection;
pub mod content;
pub mod deployment;
pub mod device;
pub mod explain;
pub mod locate;
pub mod media;
pub mod multicast;
pub mod object;
pub mod package;
pub mod pxe;
pub mod site;
pub mod status;
pub mod task_sequence;
pub mod tls;
pub mod wake;

pub use locate::DataDir;

/// Who runs the command, for audit status messages.
pub(crate) fn operator() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into())
}
