//! HTTP: per-machine iPXE scripts and boot image files.
