//! Builds media with the real `netdeploy-media` binary and checks them with the tools
//! the images must satisfy (xorriso, fsck.fat, sgdisk). A missing tool fails the test and
//! names the Debian package to install (see `media-builder/packages.txt`).

mod boot;
mod harness;
mod help;
mod iso;
mod refusals;
mod usb;
mod winpe;
