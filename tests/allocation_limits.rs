//! Headers that claim terabytes: every loader answers at once with an error naming the file,
//! and the process's peak memory (VmHWM) barely moves. One test in its own binary, so that no
//! other test's allocations land in the peak being measured.
#![allow(clippy::unwrap_used, reason = "test helpers too: a panic is the failure report")]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use genlab::engine::data::{self, DataError, DataSource, ImageShape, LoadOptions};

/// Peak resident memory of this process in KiB, after resetting it where the kernel allows.
fn reset_and_read_peak_kib() -> Option<u64> {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    peak_kib()
}

fn peak_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn gzip(path: &Path, bytes: &[u8]) {
    let mut gz =
        flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap();
}

fn idx_header(dims: &[u32]) -> Vec<u8> {
    let mut h = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        h.extend_from_slice(&d.to_be_bytes());
    }
    h
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

/// A valid PNG header for a `w`×`h` RGB image, with a few bytes of pixel data.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(&[0; 64]).unwrap();
    png_chunk(&mut out, b"IDAT", &z.finish().unwrap());
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A GIF whose screen and first frame are 65535×65535.
fn gif_claiming_65535() -> Vec<u8> {
    let mut g = b"GIF89a".to_vec();
    g.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x80, 0, 0]); // screen, 2-colour table
    g.extend_from_slice(&[0, 0, 0, 255, 255, 255]);
    g.extend_from_slice(&[0x2c, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0]); // image descriptor
    g.extend_from_slice(&[2, 2, 0x4c, 0x01, 0, 0x3b]);
    g
}

/// A BMP whose header says 2³⁰ × 2³⁰ pixels of 24 bits.
fn bmp_claiming_huge() -> Vec<u8> {
    let mut b = b"BM".to_vec();
    b.extend_from_slice(&70u32.to_le_bytes());
    b.extend_from_slice(&[0, 0, 0, 0]);
    b.extend_from_slice(&54u32.to_le_bytes());
    b.extend_from_slice(&40u32.to_le_bytes());
    b.extend_from_slice(&(1i32 << 30).to_le_bytes());
    b.extend_from_slice(&(1i32 << 30).to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&24u16.to_le_bytes());
    b.extend_from_slice(&[0; 24]);
    b.extend_from_slice(&[0; 16]);
    b
}

/// Loads `path` and checks the error names it, comes at once and leaves the peak memory
/// within a few MiB of where it was.
fn refused(what: &str, path: &Path, opts: &LoadOptions) -> DataError {
    let before = reset_and_read_peak_kib();
    let t0 = Instant::now();
    let result = data::load(&DataSource::Path(path.to_path_buf()), opts);
    let took = t0.elapsed();
    let after = peak_kib();
    let e = result.err().unwrap_or_else(|| panic!("{what}: loaded"));
    let name = path.file_name().unwrap().to_string_lossy();
    assert!(e.to_string().contains(name.as_ref()), "{what}: the error does not name the file: {e}");
    assert!(took < Duration::from_secs(2), "{what}: took {took:?}");
    if let (Some(b), Some(a)) = (before, after) {
        let grew = a.saturating_sub(b);
        assert!(grew < 32 * 1024, "{what}: peak memory grew by {grew} KiB");
        eprintln!("{what}: {e} ({took:?}, peak +{grew} KiB)");
    }
    e
}

#[test]
fn headers_claiming_terabytes_are_refused_without_allocating() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let opts = LoadOptions::default(); // the real 4 GiB budget
    let file = |name: &str, bytes: &[u8]| -> PathBuf {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };

    // IDX, raw: 4·10⁹ × 65535 × 65535 bytes claimed (17 EB), 100 bytes there.
    let mut h = idx_header(&[4_000_000_000, 65535, 65535]);
    h.extend_from_slice(&[0; 100]);
    let raw = file("huge-images-idx3-ubyte", &h);
    assert!(matches!(refused("raw IDX", &raw, &opts), DataError::Format { .. }));
    // Every dimension at u32::MAX: the product saturates rather than wrapping to something small.
    let mut h = idx_header(&[u32::MAX; 4]);
    h.extend_from_slice(&[0; 16]);
    let wrap = file("wrap-images-idx3-ubyte", &h);
    assert!(matches!(refused("raw IDX, u32::MAX dims", &wrap, &opts), DataError::Format { .. }));

    // IDX, gzip: the length is unknown up front, so the budget refuses the claim.
    let gz = d.join("huge-images-idx3-ubyte.gz");
    let mut h = idx_header(&[4_000_000_000, 65535, 65535]);
    h.extend_from_slice(&[0; 100]);
    gzip(&gz, &h);
    assert!(matches!(refused("gzip IDX", &gz, &opts), DataError::TooLarge { .. }));
    // A claim just under the budget (10⁹ bytes → 4·10⁹ bytes of f32) with 100 bytes behind it:
    // read incrementally, nothing reserved from the header.
    let gz_under = d.join("under-images-idx3-ubyte.gz");
    let mut h = idx_header(&[1000, 1000, 1000]);
    h.extend_from_slice(&[0; 100]);
    gzip(&gz_under, &h);
    let e = refused("gzip IDX under the budget", &gz_under, &opts);
    assert!(e.to_string().contains("file ends after 100"), "{e}");

    // CSV: a shape or resize target of terabytes, and a shape whose C·H·W overflows.
    let csv = file("tiny.csv", b"label,a,b,c,d\n1,0,0,0,0\n");
    let resize = LoadOptions { resize: Some((1 << 20, 1 << 20)), ..opts.clone() };
    assert!(matches!(refused("CSV resize", &csv, &resize), DataError::TooLarge { .. }));
    let overflow = LoadOptions { csv_shape: Some(ImageShape::new(4, 1 << 62, 1 << 62)), ..opts.clone() };
    assert!(matches!(refused("CSV shape", &csv, &overflow), DataError::Invalid { .. }));

    // Image folders: headers claiming 2³¹ × 2³¹ (PNG), 65535² (GIF) and 2³⁰ × 2³⁰ (BMP).
    for (name, bytes) in [
        ("huge.png", png_claiming(0x7fff_ffff, 0x7fff_ffff)),
        ("wide.png", png_claiming(0x7fff_ffff, 1)),
        ("huge.gif", gif_claiming_65535()),
        ("huge.bmp", bmp_claiming_huge()),
    ] {
        let folder = d.join(format!("folder-{name}"));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(name), &bytes).unwrap();
        match refused(name, &folder, &opts) {
            DataError::TooLarge { .. } | DataError::Invalid { .. } => {}
            other => panic!("{name}: {other}"),
        }
    }
    // A real small image resized to terabytes.
    let folder = d.join("resize-folder");
    std::fs::create_dir_all(&folder).unwrap();
    image::GrayImage::new(4, 4).save(folder.join("a.png")).unwrap();
    let resize = LoadOptions { resize: Some((1 << 24, 1 << 24)), ..opts.clone() };
    assert!(matches!(refused("folder resize", &folder, &resize), DataError::TooLarge { .. }));
}
