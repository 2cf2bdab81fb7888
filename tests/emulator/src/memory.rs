//! The board's shared files (agent RAM, host RAM, flash) and bounds-checked raw access to their mappings.
//!
//! The mappings are `MAP_SHARED`: other processes (the host's emulator, a test) read and write them while the
//! board runs. So the emulator never forms Rust references into them; every access is a bounds-checked
//! byte copy through a raw pointer ([`Region`]).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

/// A mapped range of one of the board's files, accessed by byte copies only.
///
/// A `Region` is a pointer and a length; it does not own the mapping. [`Region::new`] is `unsafe` because the
/// caller promises the mapping outlives every use of the region (the board keeps its mappings for its whole
/// life and drops them last).
#[derive(Debug, Clone, Copy)]
pub struct Region {
    ptr: *mut u8,
    len: u64,
}

impl Region {
    /// A region of no bytes: every access is out of bounds.
    pub const EMPTY: Region = Region { ptr: std::ptr::null_mut(), len: 0 };

    /// # Safety
    /// `ptr..ptr + len` must stay mapped and writable for as long as this region (or a copy) is used.
    pub unsafe fn new(ptr: *mut u8, len: u64) -> Region {
        Region { ptr, len }
    }

    /// The region covering a whole mapping.
    ///
    /// # Safety
    /// As [`Region::new`]: the mapping must outlive every use of the region.
    pub unsafe fn of(map: &mut MmapMut) -> Region {
        Region { ptr: map.as_mut_ptr(), len: map.len() as u64 }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Byte offset of `offset..offset + len` in the mapping, if it is inside.
    fn span(&self, offset: u64, len: usize) -> Option<usize> {
        let end = offset.checked_add(len as u64)?;
        (end <= self.len).then_some(offset as usize)
    }

    /// Copy `buf.len()` bytes at `offset` out of the region; `false` (and nothing copied) if out of bounds.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> bool {
        let Some(start) = self.span(offset, buf.len()) else {
            return false;
        };
        if buf.is_empty() {
            return true;
        }
        // SAFETY: in bounds (checked above) of a mapping that outlives the region (`new`'s contract); a byte
        // copy out of shared memory that another process may be writing is what a snapshot of it means.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(start), buf.as_mut_ptr(), buf.len()) };
        true
    }

    /// Copy `data` into the region at `offset`; `false` (and nothing written) if out of bounds.
    pub fn write(&self, offset: u64, data: &[u8]) -> bool {
        let Some(start) = self.span(offset, data.len()) else {
            return false;
        };
        if data.is_empty() {
            return true;
        }
        // SAFETY: in bounds (checked above) of a writable mapping that outlives the region; no Rust reference
        // into the mapping exists, so writing through the raw pointer aliases nothing.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(start), data.len()) };
        true
    }

    /// Set `len` bytes at `offset` to `byte`; `false` if out of bounds.
    pub fn fill(&self, offset: u64, len: u64, byte: u8) -> bool {
        let Some(start) = usize::try_from(len).ok().and_then(|l| self.span(offset, l)) else {
            return false;
        };
        // SAFETY: in bounds (checked above) of a writable mapping that outlives the region.
        unsafe { std::ptr::write_bytes(self.ptr.add(start), byte, len as usize) };
        true
    }

    /// Copy `len` bytes from `src` at `src_offset` to `dst` at `dst_offset` (the regions may be the same
    /// mapping and the ranges may overlap); `false` (and nothing copied) if either range is out of bounds.
    pub fn copy(src: Region, src_offset: u64, dst: Region, dst_offset: u64, len: u64) -> bool {
        let Ok(n) = usize::try_from(len) else {
            return false;
        };
        let (Some(from), Some(to)) = (src.span(src_offset, n), dst.span(dst_offset, n)) else {
            return false;
        };
        if n == 0 {
            return true;
        }
        // SAFETY: both ranges are in bounds (checked above) of mappings that outlive the regions; `copy`
        // (memmove) is correct for overlapping ranges within one mapping.
        unsafe { std::ptr::copy(src.ptr.add(from), dst.ptr.add(to), n) };
        true
    }
}

/// The two memories DMA and PCI accesses reach: agent RAM (DDR at local 0) and host RAM (PCI memory space,
/// PCI address = offset).
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub ram: Region,
    pub host: Region,
}

impl Memory {
    pub const EMPTY: Memory = Memory { ram: Region::EMPTY, host: Region::EMPTY };
}

/// Where a board file lives: a temporary file removed with the board, or a file the user named.
pub enum BackingFile {
    Temporary(tempfile::NamedTempFile),
    Named(PathBuf),
}

impl BackingFile {
    pub fn path(&self) -> &Path {
        match self {
            BackingFile::Temporary(t) => t.path(),
            BackingFile::Named(p) => p,
        }
    }
}

/// A file opened (or created) and mapped shared.
pub struct SharedFile {
    pub map: MmapMut,
    pub file: BackingFile,
}

/// Map an existing file shared, all of it, refusing a missing file or one shorter than `size`: for a file
/// another process sized and keeps mapped (a Linux guest's RAM), where creating or resizing it would be
/// wrong.
pub fn open_existing_shared(path: &Path, size: u64) -> std::io::Result<SharedFile> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    if len < size {
        return Err(std::io::Error::other(format!("is {len} bytes, shorter than the {size} bytes expected")));
    }
    // SAFETY: as in `open_shared`: the mapping is only touched through `Region` byte copies and Unicorn.
    let map = unsafe { MmapMut::map_mut(&file) }?;
    Ok(SharedFile { map, file: BackingFile::Named(path.to_path_buf()) })
}

/// Open `path` (or a new temporary file named `prefix…`), make it at least `size` bytes — bytes added are
/// `fill` — and map all of it shared. An existing longer file keeps its length (another process owns its
/// size, e.g. a guest's RAM file) when `keep_longer`, else it is an error to have it longer.
pub fn open_shared(
    path: Option<&Path>,
    prefix: &str,
    size: u64,
    fill: u8,
    keep_longer: bool,
) -> Result<SharedFile, (PathBuf, std::io::Error)> {
    let (file, backing): (File, BackingFile) = match path {
        Some(path) => {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|e| (path.to_path_buf(), e))?;
            (file, BackingFile::Named(path.to_path_buf()))
        }
        None => {
            let tmp = tempfile::Builder::new().prefix(prefix).tempfile().map_err(|e| (std::env::temp_dir(), e))?;
            let file = tmp.reopen().map_err(|e| (tmp.path().to_path_buf(), e))?;
            (file, BackingFile::Temporary(tmp))
        }
    };
    let name = backing.path().to_path_buf();
    let err = |e| (name.clone(), e);
    let old_len = file.metadata().map_err(err)?.len();
    if old_len > size && !keep_longer {
        return Err(err(std::io::Error::other(format!(
            "is {old_len} bytes, longer than the {size} bytes it stands for"
        ))));
    }
    if old_len < size {
        file.set_len(size).map_err(err)?;
    }
    // SAFETY: the file is ours to map; other processes may write it concurrently, which is the point of a
    // shared file. This process only touches the mapping through `Region` byte copies (never long-lived
    // references), and through Unicorn, which treats RAM as guest memory.
    let mut map = unsafe { MmapMut::map_mut(&file) }.map_err(err)?;
    if old_len < size && fill != 0 {
        // A newly created or extended file reads as zeros; flash must read as erased.
        map[old_len as usize..size as usize].fill(fill);
    }
    Ok(SharedFile { map, file: backing })
}

/// Give `len` bytes of `map` at `offset` a memory file of their own (a memfd named `name`), mapped shared
/// at the same address in place of the file's pages: another process handed the returned file (QEMU's
/// ivshmem device) and this process (Unicorn, which keeps using the same addresses) then see the same
/// bytes. The bytes there are copied into the new file first. The original file no longer holds those
/// bytes for this process: a third process mapping it sees stale data in that range. `offset` and `len`
/// must be page-aligned and inside the mapping.
pub fn overlay_memfd(map: &mut MmapMut, offset: u64, len: u64, name: &str) -> std::io::Result<File> {
    use std::io::Error;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::fs::FileExt;

    // SAFETY: sysconf takes no pointers.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let end = offset.checked_add(len).filter(|&e| e <= map.len() as u64);
    if end.is_none() || !offset.is_multiple_of(page) || !len.is_multiple_of(page) || len == 0 {
        return Err(Error::other(format!(
            "{len:#x} bytes at {offset:#x} are not a page-aligned range inside the {:#x}-byte mapping",
            map.len()
        )));
    }
    let cname = std::ffi::CString::new(name).map_err(Error::other)?;
    // SAFETY: `cname` is a live NUL-terminated string; the result is checked.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor owned by nothing else.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.set_len(len)?;
    let (start, n) = (offset as usize, len as usize);
    file.write_all_at(&map[start..start + n], 0)?;
    // SAFETY: the target range is inside `map` (checked above) and page-aligned, so MAP_FIXED replaces only
    // pages of this mapping, which `map` keeps reserved (and unmaps, with these pages, when dropped). No Rust
    // reference into the range is live: `map` is borrowed mutably here.
    let at = unsafe {
        let want = map.as_mut_ptr().add(start).cast::<libc::c_void>();
        let got = libc::mmap(
            want,
            n,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_FIXED,
            file.as_raw_fd(),
            0,
        );
        (got, want)
    };
    if at.0 == libc::MAP_FAILED {
        return Err(Error::last_os_error());
    }
    if at.0 != at.1 {
        return Err(Error::other("mmap with MAP_FIXED returned another address"));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_bounds_checked() {
        let mut f = open_shared(None, "bpnet-emu-test-", 4096, 0xFF, false).unwrap();
        // SAFETY: `f` outlives the region (both live to the end of the test).
        let r = unsafe { Region::of(&mut f.map) };
        assert_eq!(r.len(), 4096);
        let mut b = [0u8; 4];
        assert!(r.read(4092, &mut b));
        assert_eq!(b, [0xFF; 4]);
        assert!(!r.read(4093, &mut b));
        assert!(r.write(0, &[1, 2, 3, 4]));
        assert!(!r.write(u64::MAX - 1, &[1, 2]));
        assert!(Region::copy(r, 0, r, 2, 4));
        assert!(r.read(0, &mut b));
        assert_eq!(b, [1, 2, 1, 2]);
        assert!(!Region::copy(r, 4090, r, 0, 8));
        assert!(r.fill(8, 8, 0));
        assert!(!r.fill(4090, 8, 0));
        assert!(!Region::EMPTY.read(0, &mut b));
        assert!(Region::EMPTY.read(0, &mut []));
    }

    #[test]
    fn an_overlaid_range_is_shared_with_its_own_file() {
        use std::os::unix::fs::FileExt;
        let mut f = open_shared(None, "bpnet-emu-test-", 4 * 4096, 0, false).unwrap();
        f.map[4096] = 0xAB;
        let file = overlay_memfd(&mut f.map, 4096, 2 * 4096, "bpnet-test").unwrap();
        assert_eq!(file.metadata().unwrap().len(), 2 * 4096);
        let mut b = [0u8; 1];
        file.read_exact_at(&mut b, 0).unwrap();
        assert_eq!(b[0], 0xAB, "contents carried over");
        f.map[4097] = 0xCD;
        file.read_exact_at(&mut b, 1).unwrap();
        assert_eq!(b[0], 0xCD, "the mapping writes the new file");
        file.write_all_at(&[0xEF], 2 * 4096 - 1).unwrap();
        assert_eq!(f.map[3 * 4096 - 1], 0xEF, "and reads it");
        assert!(overlay_memfd(&mut f.map, 100, 4096, "x").is_err());
        assert!(overlay_memfd(&mut f.map, 3 * 4096, 2 * 4096, "x").is_err());
    }

    /// An existing file must be at least `size` bytes: a guest's RAM file is sized by its owner.
    #[test]
    fn existing_only_files_are_not_created_or_extended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guest-ram");
        assert!(open_existing_shared(&path, 4096).is_err());
        std::fs::write(&path, [1u8; 100]).unwrap();
        let e = open_existing_shared(&path, 4096).err().unwrap();
        assert!(e.to_string().contains("shorter"), "{e}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 100, "not extended");
        std::fs::write(&path, vec![2u8; 8192]).unwrap();
        let f = open_existing_shared(&path, 4096).unwrap();
        assert_eq!((f.map.len(), f.map[8191]), (8192, 2));
    }

    #[test]
    fn existing_files_keep_contents_and_longer_files_their_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, [7u8; 10]).unwrap();
        let f = open_shared(Some(&path), "x", 4096, 0xFF, false).unwrap();
        assert_eq!(&f.map[..10], &[7; 10]);
        assert_eq!(&f.map[10..12], &[0xFF; 2]);
        drop(f);
        assert!(open_shared(Some(&path), "x", 1024, 0, false).is_err());
        let f = open_shared(Some(&path), "x", 1024, 0, true).unwrap();
        assert_eq!(f.map.len(), 4096);
    }
}
