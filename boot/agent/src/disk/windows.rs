//! Windows PE: disks `\\.\PhysicalDrive0`, `\\.\PhysicalDrive1`, ... sized with
//! `IOCTL_DISK_GET_LENGTH_INFO` and told removable by `IOCTL_STORAGE_QUERY_PROPERTY`; layouts
//! and filesystems written by `diskpart /s <script>`, WIMs applied by `dism`, boot files by
//! `bcdboot`. Each tool is run by name: Windows looks in the agent's own directory first,
//! then in `X:\Windows\System32`, where Windows PE has them.

use std::fs::OpenOptions;
use std::os::windows::fs::OpenOptionsExt;
use std::os::windows::io::AsRawHandle;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::ptr;

use netdeploy_wire::disk::{DiskChoice, DiskInfo, DiskLayout, Filesystem, PartitionRole};
use windows_sys::Win32::Storage::FileSystem::{BusTypeMmc, BusTypeSd, BusTypeUsb};
use windows_sys::Win32::System::Ioctl::{
    PropertyStandardQuery, StorageDeviceProperty, GET_LENGTH_INFORMATION,
    IOCTL_DISK_GET_LENGTH_INFO, IOCTL_STORAGE_QUERY_PROPERTY, STORAGE_DEVICE_DESCRIPTOR,
    STORAGE_PROPERTY_QUERY,
};
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleA, GetProcAddress};
use windows_sys::Win32::System::SystemInformation::{
    FirmwareTypeBios, FirmwareTypeUefi, FIRMWARE_TYPE,
};
use windows_sys::Win32::System::IO::DeviceIoControl;

use super::diskpart::{self, disk_number, Firmware};
use super::{run_tool, DiskError, Disks};

/// Disks looked for: `\\.\PhysicalDrive0` to `\\.\PhysicalDrive31`.
const MAX_DISKS: u32 = 32;

/// Size and removable flag of a disk, from the device; `None` when it cannot be opened.
fn probe(path: &str) -> Option<(Option<u64>, bool)> {
    // No read or write access is needed for these queries, and none is asked.
    let f = OpenOptions::new().access_mode(0).open(path).ok()?;
    let handle = f.as_raw_handle();
    let mut len = GET_LENGTH_INFORMATION { Length: 0 };
    let mut got = 0u32;
    // SAFETY: the handle is open for the call; the output buffer is the structure the
    // control code fills.
    let ok = unsafe {
        DeviceIoControl(
            handle,
            IOCTL_DISK_GET_LENGTH_INFO,
            ptr::null(),
            0,
            (&mut len as *mut GET_LENGTH_INFORMATION).cast(),
            size_of::<GET_LENGTH_INFORMATION>() as u32,
            &mut got,
            ptr::null_mut(),
        )
    };
    let size = (ok != 0 && len.Length > 0).then_some(len.Length as u64);
    let query = STORAGE_PROPERTY_QUERY {
        PropertyId: StorageDeviceProperty,
        QueryType: PropertyStandardQuery,
        AdditionalParameters: [0],
    };
    // SAFETY: zeroes are a valid descriptor; the call fills at most its size.
    let mut desc: STORAGE_DEVICE_DESCRIPTOR = unsafe { std::mem::zeroed() };
    // SAFETY: as above, with the query as input.
    let ok = unsafe {
        DeviceIoControl(
            handle,
            IOCTL_STORAGE_QUERY_PROPERTY,
            (&query as *const STORAGE_PROPERTY_QUERY).cast(),
            size_of::<STORAGE_PROPERTY_QUERY>() as u32,
            (&mut desc as *mut STORAGE_DEVICE_DESCRIPTOR).cast(),
            size_of::<STORAGE_DEVICE_DESCRIPTOR>() as u32,
            &mut got,
            ptr::null_mut(),
        )
    };
    let removable = ok != 0
        && (desc.RemovableMedia || [BusTypeUsb, BusTypeSd, BusTypeMmc].contains(&desc.BusType));
    Some((size, removable))
}

/// The firmware the machine booted with, from `GetFirmwareType`; `All` where kernel32 has
/// no such function (Wine 8), so that bcdboot then writes boot files for both.
fn firmware() -> Firmware {
    type GetFirmwareType = unsafe extern "system" fn(*mut FIRMWARE_TYPE) -> i32;
    // SAFETY: kernel32 is loaded in every process; the names are NUL-terminated.
    let f = unsafe {
        GetProcAddress(
            GetModuleHandleA(c"kernel32.dll".as_ptr().cast()),
            c"GetFirmwareType".as_ptr().cast(),
        )
    };
    let Some(f) = f else {
        return Firmware::All;
    };
    // SAFETY: GetFirmwareType has this signature (winbase.h).
    let get: GetFirmwareType = unsafe { std::mem::transmute(f) };
    let mut t: FIRMWARE_TYPE = 0;
    // SAFETY: the call writes one FIRMWARE_TYPE.
    if unsafe { get(&mut t) } == 0 {
        return Firmware::All;
    }
    if t == FirmwareTypeUefi {
        Firmware::Uefi
    } else if t == FirmwareTypeBios {
        Firmware::Bios
    } else {
        Firmware::All
    }
}

impl Disks {
    /// The machine's disks, `\\.\PhysicalDrive0` upwards.
    pub fn list(&self) -> Vec<DiskInfo> {
        (0..MAX_DISKS)
            .filter_map(|n| {
                let path = format!(r"\\.\PhysicalDrive{n}");
                let (size, removable) = probe(&path)?;
                Some(DiskInfo {
                    path,
                    size_bytes: size?,
                    removable,
                })
            })
            .collect()
    }

    /// The disk `choice` picks. A `path` must be `\\.\PhysicalDriveN`; its size is 0 when
    /// it cannot be read, and the layout is then written by diskpart without it.
    pub fn choose(&self, choice: &DiskChoice) -> Result<DiskInfo, DiskError> {
        let Some(path) = &choice.path else {
            return choice
                .choose(&self.list())
                .cloned()
                .map_err(DiskError::Choose);
        };
        if disk_number(path).is_none() {
            return Err(DiskError::Choose(format!(
                "{path:?} is not a Windows disk: write \\\\.\\PhysicalDriveN"
            )));
        }
        let (size, removable) = probe(path).unwrap_or((None, false));
        Ok(DiskInfo {
            path: path.clone(),
            size_bytes: size.unwrap_or(0),
            removable,
        })
    }

    fn number(disk: &DiskInfo) -> u32 {
        disk_number(&disk.path).unwrap_or_default()
    }

    /// Runs `script` with `diskpart /s`; the script is kept in the state directory.
    fn diskpart(&self, name: &str, target: &str, script: &str) -> Result<(), DiskError> {
        std::fs::create_dir_all(&self.state_dir).map_err(|source| DiskError::Read {
            path: self.state_dir.clone(),
            source,
        })?;
        let file = self.state_dir.join(name);
        std::fs::write(&file, script.replace('\n', "\r\n")).map_err(|source| DiskError::Read {
            path: file.clone(),
            source,
        })?;
        run_tool(
            "diskpart",
            target,
            Command::new("diskpart.exe").arg("/s").arg(&file),
        )
        .map(|_| ())
    }

    /// Writes `layout` with diskpart: clean, convert, create, format the ESP FAT32 and the
    /// Windows partitions NTFS, and give them their letters (docs/windows-pe.md).
    pub fn partition(&mut self, choice: &DiskChoice, layout: &DiskLayout) -> Result<(), DiskError> {
        let disk = self.choose(choice)?;
        let size = (disk.size_bytes > 0).then_some(disk.size_bytes);
        let script = diskpart::partition_script(Self::number(&disk), layout, size)?;
        self.diskpart("diskpart-partition.txt", &disk.path, &script)?;
        self.forget_journals(&disk.path);
        let placed = size.and_then(|s| layout.place(s).ok()).unwrap_or_default();
        self.partitioned
            .insert(disk.path.clone(), (layout.clone(), placed));
        Ok(())
    }

    /// Formats partition `number` with diskpart.
    pub fn format(
        &mut self,
        choice: &DiskChoice,
        number: u32,
        fs: &Filesystem,
    ) -> Result<(), DiskError> {
        let disk = self.choose(choice)?;
        let label = self.check_format(&disk.path, number, fs)?;
        let letter = match self.laid_out(&disk.path, number)? {
            Some(_) => None,
            None => diskpart::letter_for(fs),
        };
        let script =
            diskpart::format_script(Self::number(&disk), number, fs, label.as_deref(), letter)?;
        self.diskpart("diskpart-format.txt", &disk.path, &script)
    }

    /// Partition `partition` as its volume (`\\.\W:`) when this run gave it a letter, else
    /// as its device; the whole disk as `\\.\PhysicalDriveN`.
    pub fn target(
        &self,
        choice: &DiskChoice,
        partition: Option<u32>,
    ) -> Result<PathBuf, DiskError> {
        let disk = self.choose(choice)?;
        let Some(n) = partition else {
            return Ok(PathBuf::from(disk.path));
        };
        if let Some((layout, _)) = self.partitioned.get(&disk.path) {
            self.laid_out(&disk.path, n)?;
            if let Some(letter) = diskpart::letters(layout)[n as usize - 1] {
                return Ok(PathBuf::from(format!(r"\\.\{letter}:")));
            }
        }
        Ok(PathBuf::from(format!(
            r"\\?\GLOBALROOT\Device\Harddisk{}\Partition{n}",
            Self::number(&disk)
        )))
    }

    /// Filesystems are not grown in Windows PE: Windows images are WIMs, applied by `dism`
    /// onto a partition already as large as it should be.
    pub fn grow(&self, _partition: &Path) -> Result<Option<String>, DiskError> {
        Ok(None)
    }

    /// Applies the WIM `image` (its first image) to the drive `target` with dism.
    pub fn apply_wim(&self, image: &Path, target: &Path) -> Result<(), DiskError> {
        let text = target.to_string_lossy();
        // The volume of a lettered partition, `\\.\W:`, is applied to as its root, `W:\`.
        let dir = match text.strip_prefix(r"\\.\") {
            Some(v) if v.len() == 2 && v.ends_with(':') => format!(r"{v}\"),
            _ => text.into_owned(),
        };
        if dir.starts_with(r"\\") {
            return Err(DiskError::Unsupported(format!(
                "a WIM is applied to a drive (W:\\), not to the device {dir}: partition the \
                 disk in this task sequence or give the step a target"
            )));
        }
        let args = diskpart::dism_args(&image.to_string_lossy(), &dir);
        run_tool("dism", &dir, Command::new("dism.exe").args(&args)).map(|_| ())
    }

    /// `bcdboot W:\Windows /s S: /f UEFI|BIOS|ALL`: the system partition is the ESP when
    /// there is one (the layout of this run, or a UEFI machine), else the Windows partition.
    pub fn bcdboot(&self) -> Result<(), DiskError> {
        let fw = firmware();
        let has_esp = self
            .partitioned
            .values()
            .any(|(l, _)| l.partitions.iter().any(|p| p.role == PartitionRole::Esp));
        let system = if has_esp || (self.partitioned.is_empty() && fw == Firmware::Uefi) {
            diskpart::ESP_LETTER
        } else {
            diskpart::WINDOWS_LETTER
        };
        let args = diskpart::bcdboot_args(diskpart::WINDOWS_LETTER, system, fw);
        run_tool("bcdboot", &args[0], Command::new("bcdboot.exe").args(&args)).map(|_| ())
    }
}
