//! The CUDA C++ sources, embedded in the binary so a GPU machine needs no source tree.

/// Shared header, passed to NVRTC under this include name.
pub const COMMON_HEADER: (&str, &str) = ("focus_common.cuh", include_str!("../../cuda/focus_common.cuh"));

/// (file name, source) of every kernel file, one op family each.
pub const SOURCES: &[(&str, &str)] = &[
    ("binary.cu", include_str!("../../cuda/binary.cu")),
    ("cast.cu", include_str!("../../cuda/cast.cu")),
    ("conv_dw.cu", include_str!("../../cuda/conv_dw.cu")),
    ("movement.cu", include_str!("../../cuda/movement.cu")),
    ("norm.cu", include_str!("../../cuda/norm.cu")),
    ("rope.cu", include_str!("../../cuda/rope.cu")),
    ("softmax.cu", include_str!("../../cuda/softmax.cu")),
    ("unary.cu", include_str!("../../cuda/unary.cu")),
    ("vq.cu", include_str!("../../cuda/vq.cu")),
];

/// Names of the `extern "C"` kernels a source defines, with macro-instantiated entry points
/// expanded for every dtype suffix the file's instantiation macro uses.
pub fn entry_points(src: &str) -> Vec<String> {
    let mut names = Vec::new();
    // Suffixes come from the instantiation macro the file uses.
    let suffixes: &[&str] =
        if src.contains("MOVE(b1") { &["b1", "b2", "b4", "b8"] } else { &["f32", "f16", "bf16"] };
    for line in src.lines() {
        let Some(rest) = line.split("extern \"C\" __global__ void ").nth(1) else {
            continue;
        };
        let name: String =
            rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '#').collect();
        if let Some(stem) = name.strip_suffix("##name") {
            names.extend(suffixes.iter().map(|s| format!("{stem}{s}")));
        } else {
            names.push(name);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_defines_kernels() {
        for (file, src) in SOURCES {
            let e = entry_points(src);
            assert!(!e.is_empty(), "{file} defines no kernels");
            assert!(src.contains("#include \"focus_common.cuh\""), "{file}");
        }
        let all: Vec<String> = SOURCES.iter().flat_map(|(_, s)| entry_points(s)).collect();
        assert!(all.contains(&"unary_bf16".to_string()) && all.contains(&"take_i64_b8".to_string()));
    }
}
