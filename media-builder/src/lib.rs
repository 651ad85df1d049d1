//! netdeploy boot media: hybrid ISO 9660 images (El Torito BIOS and UEFI, bootable from CD
//! or written raw to a USB stick) and raw GPT USB disk images, built byte for byte the same
//! from the same inputs and `SOURCE_DATE_EPOCH` (docs/media.md); and Windows PE media from a
//! user's own Windows PE files, with the agent put into `boot.wim` ([`winpe`]).

pub mod bootloaders;
pub mod fat;
pub mod gpt;
pub mod iso9660;
pub mod mbr;
pub mod media;
pub mod timestamp;
pub mod usb;
pub mod winpe;
/// The media variables file, shared with the agent that reads it.
pub use netdeploy_wire::variables;
