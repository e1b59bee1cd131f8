//! Hands the agent's own code pages back to the kernel when it goes idle.
//!
//! Start-up and a first command touch code that an idle agent never runs
//! again (WASI and component linking, the compile hand-off, TLS set-up,
//! every host interface), and the kernel maps the pages around each one it
//! faults in: measured, 9 MiB of the 12.2 MB binary stayed resident in an
//! idle agent, three quarters of its RSS. Those pages are clean and
//! file-backed, so `MADV_PAGEOUT` on the binary's read-only mappings drops
//! them at no risk: what runs next faults its pages back from the file.
//! Writable mappings (the data segment, whose written pages are anonymous)
//! are left alone: paging them out would mean swap. So is a read-only
//! mapping that holds anonymous pages (`Anonymous:` in `/proc/self/smaps`):
//! the read-only-after-relocation segment was written by the loader before
//! it was made read-only, so its ≈ 400 KiB are copy-on-write copies, not
//! the file's pages, and paging them out would send them to swap on the SD
//! card. Linux 5.4 and later; on an older kernel the advice is refused and
//! nothing changes.

use std::io::BufRead;
use std::os::unix::fs::MetadataExt;

/// Why the code pages stayed where they were (nothing else changes).
#[derive(Debug, thiserror::Error)]
pub enum CodePagesError {
    #[error("cannot read the agent's memory map (/proc/self/smaps): {0}")]
    Maps(std::io::Error),
    #[error("cannot find the agent's own binary (/proc/self/exe): {0}")]
    Exe(std::io::Error),
    #[error("the kernel refused to page out the agent's code (needs Linux 5.4 or later): {0}")]
    Advise(std::io::Error),
}

/// One mapping of the binary that may be paged out.
#[derive(Debug, PartialEq, Eq)]
struct Range {
    start: usize,
    end: usize,
}

/// The read-only mappings of the file `(dev, inode)` in one
/// `/proc/<pid>/maps` line, if that line is one.
fn readonly_mapping_of(line: &str, dev: (u64, u64), inode: u64) -> Option<Range> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let perms = fields.next()?;
    let _offset = fields.next()?;
    let (major, minor) = fields.next()?.split_once(':')?;
    let ino: u64 = fields.next()?.parse().ok()?;
    let same_file = ino == inode
        && u64::from_str_radix(major, 16).ok()? == dev.0
        && u64::from_str_radix(minor, 16).ok()? == dev.1;
    if !same_file || perms.contains('w') {
        return None;
    }
    Some(Range {
        start: usize::from_str_radix(start, 16).ok()?,
        end: usize::from_str_radix(end, 16).ok()?,
    })
    .filter(|r| r.end > r.start)
}

/// The mappings of the file `(dev, inode)` in `/proc/<pid>/smaps` that may
/// be paged out: read-only, and holding no anonymous (copy-on-write) page.
/// A mapping whose `Anonymous:` line is missing is left alone too.
fn pageable_mappings(
    smaps: impl BufRead,
    dev: (u64, u64),
    inode: u64,
) -> std::io::Result<Vec<Range>> {
    let mut chosen = Vec::new();
    // The current mapping if it is one of the file's read-only ones, and
    // its anonymous KiB once seen.
    let mut current: Option<(Range, Option<u64>)> = None;
    for line in smaps.lines() {
        let line = line?;
        let first = line.split_whitespace().next().unwrap_or_default();
        if first.ends_with(':') {
            if first == "Anonymous:"
                && let Some((_, anon)) = current.as_mut()
            {
                *anon = crate::platform::metrics::status_field_kib(&line, "Anonymous:");
            }
            continue;
        }
        // A mapping's header line (the /proc/<pid>/maps format).
        if let Some((range, Some(0))) = current.take() {
            chosen.push(range);
        }
        current = readonly_mapping_of(&line, dev, inode).map(|r| (r, None));
    }
    if let Some((range, Some(0))) = current {
        chosen.push(range);
    }
    Ok(chosen)
}

/// Pages out the binary's read-only mappings that hold no anonymous page;
/// returns the bytes advised (mapped, not necessarily resident).
pub fn page_out_own_code() -> Result<usize, CodePagesError> {
    // By inode, not by name: after a package upgrade the running binary's
    // file is deleted and its maps lines say "(deleted)".
    let exe = std::fs::metadata("/proc/self/exe").map_err(CodePagesError::Exe)?;
    let dev = (
        u64::from(rustix::fs::major(exe.dev())),
        u64::from(rustix::fs::minor(exe.dev())),
    );
    let smaps = std::fs::File::open("/proc/self/smaps").map_err(CodePagesError::Maps)?;
    let ranges = pageable_mappings(std::io::BufReader::new(smaps), dev, exe.ino())
        .map_err(CodePagesError::Maps)?;
    let mut advised = 0;
    for range in ranges {
        page_out(&range).map_err(|e| CodePagesError::Advise(e.into()))?;
        advised += range.end - range.start;
    }
    Ok(advised)
}

#[allow(unsafe_code)]
fn page_out(range: &Range) -> rustix::io::Result<()> {
    // SAFETY: the range is a whole mapping of our own binary that the
    // kernel listed, read-only, never unmapped while the process runs;
    // MADV_PAGEOUT only drops clean pages from residency, their contents
    // are read back from the file on the next access. No memory is freed
    // or changed.
    unsafe {
        rustix::mm::madvise(
            range.start as *mut std::ffi::c_void,
            range.end - range.start,
            rustix::mm::Advice::LinuxPageOut,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_binarys_readonly_mappings_are_chosen() {
        let dev = (0xfd, 0x01);
        let lines = [
            "5581a000-5581c000 r--p 00000000 fd:01 1234   /usr/bin/neopro-runtime",
            "5581c000-55822000 r-xp 00002000 fd:01 1234   /usr/bin/neopro-runtime (deleted)",
            "55822000-55823000 rw-p 00008000 fd:01 1234   /usr/bin/neopro-runtime",
            "7f00a000-7f00b000 r-xp 00000000 fd:01 999    /usr/lib/libc.so.6",
            "7f00b000-7f00c000 r-xp 00000000 08:02 1234   /mnt/other-disk/same-inode",
            "7f00c000-7f00d000 rw-p 00000000 00:00 0 ",
            "not a maps line",
        ];
        let chosen: Vec<Range> = lines
            .iter()
            .filter_map(|l| readonly_mapping_of(l, dev, 1234))
            .collect();
        assert_eq!(chosen, the_two_readonly_mappings());
    }

    /// The read-only and the code mapping of the binary in both samples.
    fn the_two_readonly_mappings() -> Vec<Range> {
        vec![
            Range {
                start: 0x5581a000,
                end: 0x5581c000,
            },
            Range {
                start: 0x5581c000,
                end: 0x55822000,
            },
        ]
    }

    #[test]
    fn a_readonly_mapping_holding_anonymous_pages_is_left_alone() -> std::io::Result<()> {
        let dev = (0xfd, 0x01);
        let smaps = "\
5581a000-5581c000 r--p 00000000 fd:01 1234   /usr/bin/neopro-runtime
Size:                  8 kB
Rss:                   8 kB
Anonymous:             0 kB
VmFlags: rd mr mw me dw
5581c000-55822000 r-xp 00002000 fd:01 1234   /usr/bin/neopro-runtime
Size:                 24 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me dw
55822000-55886000 r--p 00008000 fd:01 1234   /usr/bin/neopro-runtime
Size:                400 kB
Anonymous:           400 kB
VmFlags: rd mr mw me ac
55886000-55887000 rw-p 0006c000 fd:01 1234   /usr/bin/neopro-runtime
Anonymous:             4 kB
55887000-55888000 r--p 0006d000 fd:01 1234   /usr/bin/neopro-runtime
Size:                  4 kB
";
        let chosen = pageable_mappings(std::io::Cursor::new(smaps), dev, 1234)?;
        // The relocated (copy-on-write) mapping, the data segment and the
        // mapping without an Anonymous line are not chosen.
        assert_eq!(chosen, the_two_readonly_mappings());
        Ok(())
    }

    fn status_kib(key: &str) -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| crate::platform::metrics::status_field_kib(&s, key))
            .unwrap_or(0)
    }

    /// This test binary's own code: resident before, far less after.
    #[test]
    fn paging_out_drops_the_resident_code_of_this_process() -> Result<(), CodePagesError> {
        let before = status_kib("RssFile:");
        let advised = page_out_own_code()?;
        let after = status_kib("RssFile:");
        assert!(advised > 0, "the test binary has read-only mappings");
        assert!(
            after + 1024 < before,
            "file-backed RSS {before} KiB before, {after} KiB after"
        );
        Ok(())
    }
}
