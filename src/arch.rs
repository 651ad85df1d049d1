//! Client firmware architecture, from the numeric value of DHCP option 93.
//!
//! The values are those of the IANA "Processor Architecture Types" registry, not the names in
//! the older RFC 4578 text nor those of dhcproto's `Architecture` enum (docs/network-boot.md): what
//! matters is the number the firmware sends. Value 9 is "EFI x86-64" as sent by some firmware
//! (EBC in the registry); it is treated as x64.

use std::fmt;

/// The firmware families netdeploy can boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientArch {
    /// 0: legacy BIOS on x86 (PXE ROM or iPXE option ROM).
    BiosX86,
    /// 6: 32-bit UEFI.
    EfiIa32,
    /// 7 and 9: 64-bit UEFI on x86-64.
    EfiX64,
    /// 10: 32-bit ARM UEFI.
    EfiArm32,
    /// 11: 64-bit ARM UEFI.
    EfiArm64,
    /// 16: UEFI HTTP boot on x86-64.
    HttpX64,
    /// 19: UEFI HTTP boot on ARM64.
    HttpArm64,
}

impl ClientArch {
    /// All architectures, in the order their configuration keys are listed.
    pub const ALL: [ClientArch; 7] = [
        ClientArch::BiosX86,
        ClientArch::EfiIa32,
        ClientArch::EfiX64,
        ClientArch::EfiArm32,
        ClientArch::EfiArm64,
        ClientArch::HttpX64,
        ClientArch::HttpArm64,
    ];

    /// Maps the numeric option 93 value; `None` for values netdeploy does not boot.
    pub fn from_option93(value: u16) -> Option<ClientArch> {
        match value {
            0 => Some(ClientArch::BiosX86),
            6 => Some(ClientArch::EfiIa32),
            7 | 9 => Some(ClientArch::EfiX64),
            10 => Some(ClientArch::EfiArm32),
            11 => Some(ClientArch::EfiArm64),
            16 => Some(ClientArch::HttpX64),
            19 => Some(ClientArch::HttpArm64),
            _ => None,
        }
    }

    /// The configuration key and log name of this architecture.
    pub fn key(self) -> &'static str {
        match self {
            ClientArch::BiosX86 => "bios",
            ClientArch::EfiIa32 => "efi-ia32",
            ClientArch::EfiX64 => "efi-x64",
            ClientArch::EfiArm32 => "efi-arm32",
            ClientArch::EfiArm64 => "efi-arm64",
            ClientArch::HttpX64 => "http-x64",
            ClientArch::HttpArm64 => "http-arm64",
        }
    }

    /// Parses a configuration key (see [`ClientArch::key`]).
    pub fn from_key(key: &str) -> Option<ClientArch> {
        ClientArch::ALL.into_iter().find(|a| a.key() == key)
    }

    /// UEFI HTTP boot clients fetch their first stage over HTTP, not TFTP.
    pub fn is_http_boot(self) -> bool {
        matches!(self, ClientArch::HttpX64 | ClientArch::HttpArm64)
    }
}

impl fmt::Display for ClientArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option93_values_follow_the_iana_registry() {
        assert_eq!(ClientArch::from_option93(0), Some(ClientArch::BiosX86));
        assert_eq!(ClientArch::from_option93(6), Some(ClientArch::EfiIa32));
        assert_eq!(ClientArch::from_option93(7), Some(ClientArch::EfiX64));
        assert_eq!(ClientArch::from_option93(9), Some(ClientArch::EfiX64));
        assert_eq!(ClientArch::from_option93(10), Some(ClientArch::EfiArm32));
        assert_eq!(ClientArch::from_option93(11), Some(ClientArch::EfiArm64));
        assert_eq!(ClientArch::from_option93(16), Some(ClientArch::HttpX64));
        assert_eq!(ClientArch::from_option93(19), Some(ClientArch::HttpArm64));
    }

    #[test]
    fn unknown_option93_values_are_not_booted() {
        for v in [1u16, 2, 8, 12, 15, 17, 18, 20, 255, 0xffff] {
            assert_eq!(ClientArch::from_option93(v), None, "value {v}");
        }
    }

    #[test]
    fn keys_round_trip() {
        for a in ClientArch::ALL {
            assert_eq!(ClientArch::from_key(a.key()), Some(a));
        }
    }
}
