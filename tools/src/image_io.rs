//! Image decoding with limits, so corrupt or huge files give errors, not crashes.

use std::path::Path;

/// Largest side accepted, and the decoder's allocation cap.
pub const MAX_SIDE: u32 = 8192;
const MAX_ALLOC: u64 = 512 << 20;

pub const DEMO_PNG: &[u8] = include_bytes!("../assets/demo.png");

/// RGB image as f32 in [0, 1], row-major HWC.
pub struct Rgb {
    pub h: usize,
    pub w: usize,
    pub data: Vec<f32>,
}

fn decode(
    reader: image::ImageReader<impl std::io::BufRead + std::io::Seek>,
    what: &str,
) -> Result<Rgb, String> {
    let mut reader = reader.with_guessed_format().map_err(|e| format!("{what}: {e}"))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| format!("cannot decode image {what}: {e}"))?;
    let rgb = img.to_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    if w == 0 || h == 0 {
        return Err(format!("image {what} is empty"));
    }
    Ok(Rgb { h, w, data: rgb.as_raw().iter().map(|&v| v as f32 / 255.0).collect() })
}

pub fn load(path: Option<&Path>) -> Result<Rgb, String> {
    match path {
        None => decode(image::ImageReader::new(std::io::Cursor::new(DEMO_PNG)), "<bundled demo.png>"),
        Some(p) => {
            let f = std::fs::File::open(p).map_err(|e| format!("cannot open {}: {e}", p.display()))?;
            decode(image::ImageReader::new(std::io::BufReader::new(f)), &p.display().to_string())
        }
    }
}
