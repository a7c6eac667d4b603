//! The CUDA C++ sources, embedded in the binary so a GPU machine needs no source tree.

/// Shared header, passed to NVRTC under this include name.
pub const COMMON_HEADER: (&str, &str) = ("focus_common.cuh", include_str!("../../cuda/focus_common.cuh"));

/// (file name, source) of every kernel file, one op family each.
pub const SOURCES: &[(&str, &str)] = &[
    ("attention.cu", include_str!("../../cuda/attention.cu")),
    ("binary.cu", include_str!("../../cuda/binary.cu")),
    ("cast.cu", include_str!("../../cuda/cast.cu")),
    ("conv.cu", include_str!("../../cuda/conv.cu")),
    ("conv_dw.cu", include_str!("../../cuda/conv_dw.cu")),
    ("flash_attn.cu", include_str!("../../cuda/flash_attn.cu")),
    ("gemv.cu", include_str!("../../cuda/gemv.cu")),
    ("movement.cu", include_str!("../../cuda/movement.cu")),
    ("norm.cu", include_str!("../../cuda/norm.cu")),
    ("reduce.cu", include_str!("../../cuda/reduce.cu")),
    ("rope.cu", include_str!("../../cuda/rope.cu")),
    ("sampling.cu", include_str!("../../cuda/sampling.cu")),
    ("softmax.cu", include_str!("../../cuda/softmax.cu")),
    ("token.cu", include_str!("../../cuda/token.cu")),
    ("unary.cu", include_str!("../../cuda/unary.cu")),
    ("vq.cu", include_str!("../../cuda/vq.cu")),
];

/// How a kernel parameter is passed, from its declared type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    Ptr,
    Int,
    U64,
    Float,
    /// A by-value struct or element-typed scalar.
    Other,
}

fn param_kind(decl: &str) -> ParamKind {
    if decl.contains('*') {
        return ParamKind::Ptr;
    }
    // Drop the parameter name; what is left is the type.
    let ty = decl.trim().rsplit_once(char::is_whitespace).map_or("", |(t, _)| t.trim());
    match ty.trim_start_matches("const ").trim() {
        "int" => ParamKind::Int,
        "u64" | "unsigned long long" => ParamKind::U64,
        "float" => ParamKind::Float,
        _ => ParamKind::Other,
    }
}

/// Names of the `extern "C"` kernels a source defines. Entry points written inside an
/// instantiation macro (`#define M(name, T) ... void foo_##name(...)`) are expanded for every
/// invocation of the macro, directly or through `FOR_FLOAT_TYPES(M)`.
pub fn entry_points(src: &str) -> Vec<String> {
    entry_signatures(src).into_iter().map(|(n, _)| n).collect()
}

/// Every entry point with the kinds of its parameters.
pub fn entry_signatures(src: &str) -> Vec<(String, Vec<ParamKind>)> {
    const MARK: &str = "extern \"C\" __global__ void ";
    let ident = |s: &str| -> String {
        s.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '#').collect()
    };
    let lines: Vec<&str> = src.lines().collect();
    // The parameter list starting at `rest` (just after the name), across continuation lines.
    let params_at = |li: usize, rest: &str| -> Vec<ParamKind> {
        let mut text = String::new();
        let mut depth = 0;
        let mut first = true;
        'outer: for line in std::iter::once(rest).chain(lines[li + 1..].iter().copied()) {
            for ch in line.trim_end().trim_end_matches('\\').chars() {
                match ch {
                    '(' => {
                        depth += 1;
                        if first {
                            first = false;
                            continue;
                        }
                    }
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            break 'outer;
                        }
                    }
                    _ => {}
                }
                if !first {
                    text.push(ch);
                }
            }
            text.push(' ');
        }
        text.split(',').filter(|p| !p.trim().is_empty()).map(param_kind).collect()
    };
    let mut out = Vec::new();
    // (macro name, parameter names, entry-point patterns with their parameters)
    type Macro = (String, Vec<String>, Vec<(String, Vec<ParamKind>)>);
    let mut macros: Vec<Macro> = Vec::new();
    let mut in_macro = false;
    for (li, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        if let Some(def) = t.strip_prefix("#define ") {
            let name = ident(def);
            let params = def[name.len()..]
                .strip_prefix('(')
                .and_then(|r| r.split(')').next())
                .map(|p| p.split(',').map(|x| x.trim().to_string()).collect())
                .unwrap_or_default();
            macros.push((name, params, Vec::new()));
            in_macro = true;
        }
        if let Some(rest) = line.split(MARK).nth(1) {
            // `__launch_bounds__(threads[, blocks])` may sit between `void` and the name.
            let rest = match rest.strip_prefix("__launch_bounds__(") {
                Some(r) => r.split_once(')').map_or(r, |(_, after)| after.trim_start()),
                None => rest,
            };
            let pat = ident(rest);
            let sig = params_at(li, &rest[pat.len()..]);
            match macros.last_mut() {
                Some(m) if in_macro => m.2.push((pat, sig)),
                _ => out.push((pat, sig)),
            }
        }
        if in_macro && !line.trim_end().ends_with('\\') {
            in_macro = false;
        }
    }
    let float_types = [["f32", "float"], ["f16", "__half"], ["bf16", "__nv_bfloat16"]];
    for (name, params, pats) in macros.iter().filter(|m| !m.2.is_empty()) {
        let mut arg_lists: Vec<Vec<String>> = Vec::new();
        for line in src.lines().map(str::trim) {
            if line.starts_with("#define") {
                continue;
            }
            if line == format!("FOR_FLOAT_TYPES({name})") {
                arg_lists.extend(float_types.iter().map(|a| a.iter().map(|s| s.to_string()).collect()));
            } else if let Some(args) =
                line.strip_prefix(&format!("{name}(")).and_then(|r| r.strip_suffix(')'))
            {
                arg_lists.push(args.split(',').map(|x| x.trim().to_string()).collect());
            }
        }
        for args in &arg_lists {
            for (pat, sig) in pats {
                let mut n = pat.clone();
                for (p, a) in params.iter().zip(args) {
                    n = n.replace(&format!("##{p}##"), a).replace(&format!("##{p}"), a);
                }
                out.push((n, sig.clone()));
            }
        }
    }
    out
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

    #[test]
    fn signatures_classify_parameters() {
        use ParamKind::*;
        let src = "#define M(name, T) \\\n    extern \"C\" __global__ void k_##name(const T* x, T* y, u64 n, \\\n        int op, float s, Spec p, T v) { \\\n    }\nM(f32, float)\n";
        let sig = entry_signatures(src);
        assert_eq!(sig, vec![("k_f32".to_string(), vec![Ptr, Ptr, U64, Int, Float, Other, Other])]);
        let bounded = "extern \"C\" __global__ void __launch_bounds__(128, 2) k(const float* x, int n) {}\n";
        assert_eq!(entry_signatures(bounded), vec![("k".to_string(), vec![Ptr, Int])]);
    }
}
