//! The deployment catalog: the objects of docs/site-file.md as plain values.
//!
//! - [`model`]: devices, collections, packages, boot images, task sequences, deployments and
//!   the [`Catalog`] holding them;
//! - [`membership`]: who a booting machine is (SMBIOS UUID first, then MAC) and which
//!   collections hold it;
//! - [`identity`]: which SMBIOS UUIDs tell machines apart (placeholders, duplicates);
//! - [`index`]: the catalog indexed for the boot path, and the view the decision reads.
//!
//! Pure values: the store loads and saves them, the decision code only reads them.

pub mod identity;
pub mod index;
pub mod membership;
pub mod model;
pub mod site;

pub use membership::{IdentityKey, MachineIdentity};
pub use model::*;
