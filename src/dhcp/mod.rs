//! DHCP for PXE clients.
