//! The CUDA emulator (tools/cuda-emu) from Rust: building it from the real kernel sources (each
//! rewritten for the host compiler) and driving one emulator process over its pipe protocol.
//! Shared by the per-op parity run (emu.rs) and the whole-plan run (emu_plan.rs).

use focus_kernels::cuda::fused::GENERATED;
use focus_kernels::cuda::launch::{Arg, Call, GemmType};
use focus_kernels::cuda::sources::{entry_points, COMMON_HEADER, SOURCES};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

// ---------------------------------------------------------------------------------------------
// CUDA C++ → host C++. Everything else compiles as is against tools/cuda-emu/include.

/// Text ranges outside comments and string/char literals, so rewrites never touch those.
fn code_spans(src: &str) -> Vec<bool> {
    let b = src.as_bytes();
    let mut code = vec![true; b.len()];
    let mut i = 0;
    while i < b.len() {
        let start = i;
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i = (i + 2).min(b.len());
        } else if b[i] == b'"' || b[i] == b'\'' {
            let q = b[i];
            i += 1;
            while i < b.len() && b[i] != q {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(b.len());
        } else {
            i += 1;
            continue;
        }
        code[start..i].iter_mut().for_each(|c| *c = false);
    }
    code
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Index just past the parenthesis matching the one at `open`.
fn matching_paren(src: &str, code: &[bool], open: usize) -> Result<usize, String> {
    let mut depth = 0;
    for (i, c) in src.bytes().enumerate().skip(open) {
        if !code[i] {
            continue;
        }
        match c {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i + 1);
                }
            }
            _ => {}
        }
    }
    Err(format!("unbalanced parenthesis at byte {open}"))
}

/// Split `text` at `sep` outside parentheses, brackets and literals.
fn split_top(text: &str, sep: u8) -> Vec<&str> {
    let code = code_spans(text);
    let (mut depth, mut start, mut out) = (0i32, 0, Vec::new());
    for (i, c) in text.bytes().enumerate() {
        if !code[i] {
            continue;
        }
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            c if c == sep && depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

/// `"=r"(x), "+f"(y)` → `emu_asm_out("=r", x), emu_asm_out("+f", y)`.
fn asm_operands(section: &str, func: &str) -> Result<String, String> {
    let mut out = Vec::new();
    for op in split_top(section, b',') {
        let op = op.trim();
        if op.is_empty() {
            continue;
        }
        let open = op.find('(').ok_or_else(|| format!("asm operand `{op}`"))?;
        let (constraint, expr) = (op[..open].trim(), &op[open + 1..op.len() - 1]);
        if !constraint.starts_with('"') || !op.ends_with(')') {
            return Err(format!("asm operand `{op}`"));
        }
        out.push(format!("{func}({constraint}, {expr})"));
    }
    Ok(out.join(", "))
}

/// The host C++ for one CUDA source: `extern "C"` dropped (entry points live in a namespace per
/// file), `extern __shared__ T name[];` → `T* name = (T*)emu_dyn_smem(align);`, and
/// `asm [volatile] ("tmpl" : outs : ins [: clobbers]);` → `emu_asm("tmpl", {outs}, {ins});`
/// (the runtime interprets the PTX). Line numbers are kept.
pub fn rewrite(src: &str) -> Result<String, String> {
    let code = code_spans(src);
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len() + 1024);
    let (mut i, mut copied) = (0, 0);
    let word_at = |i: usize, w: &str| {
        code[i]
            && src[i..].starts_with(w)
            && (i == 0 || !is_ident(b[i - 1]))
            && b.get(i + w.len()).is_none_or(|c| !is_ident(*c))
    };
    let skip_ws = |mut j: usize| {
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        j
    };
    // The replacement keeps the original's newlines (escaped inside a macro).
    let newlines = |orig: &str| {
        let nl = if orig.contains("\\\n") { " \\\n" } else { "\n" };
        nl.repeat(orig.matches('\n').count())
    };
    while i < b.len() {
        if word_at(i, "extern") {
            let j = skip_ws(i + 6);
            if src[j..].starts_with("\"C\"") {
                out.push_str(&src[copied..i]);
                i = j + 3;
                while b.get(i) == Some(&b' ') {
                    i += 1;
                }
                copied = i;
                continue;
            }
            if word_at(j, "__shared__") {
                let end = j + src[j..].find(';').ok_or("unterminated extern __shared__")?;
                let mut decl = src[j + 10..end].trim().to_string();
                let mut align = 16;
                if let Some(rest) = decl.strip_prefix("__align__(") {
                    let close = rest.find(')').ok_or("bad __align__")?;
                    align = rest[..close].trim().parse::<usize>().map_err(|e| e.to_string())?;
                    decl = rest[close + 1..].trim().to_string();
                }
                let decl = decl.strip_suffix("[]").ok_or_else(|| format!("extern __shared__ `{decl}`"))?;
                let name_at = decl.rfind(|c: char| !c.is_alphanumeric() && c != '_').map_or(0, |p| p + 1);
                let (ty, name) = (decl[..name_at].trim(), &decl[name_at..]);
                out.push_str(&src[copied..i]);
                out.push_str(&format!("{ty}* {name} = reinterpret_cast<{ty}*>(emu_dyn_smem({align}))"));
                out.push_str(&newlines(&src[i..end]));
                i = end;
                copied = i;
                continue;
            }
        }
        let asm_word = ["asm", "__asm__", "__asm"].into_iter().find(|w| word_at(i, w));
        if let Some(w) = asm_word {
            let mut j = skip_ws(i + w.len());
            for q in ["volatile", "__volatile__", "inline"] {
                if word_at(j, q) {
                    j = skip_ws(j + q.len());
                }
            }
            if b.get(j) != Some(&b'(') {
                return Err(format!("asm without `(` at byte {i}"));
            }
            let end = matching_paren(src, &code, j)?;
            let sections = split_top(&src[j + 1..end - 1], b':');
            if sections.len() > 4 {
                return Err(format!("asm goto / labels not emulated: {}", &src[i..end]));
            }
            let tmpl = sections[0].trim();
            let outs = asm_operands(sections.get(1).copied().unwrap_or(""), "emu_asm_out")?;
            let ins = asm_operands(sections.get(2).copied().unwrap_or(""), "emu_asm_in")?;
            out.push_str(&src[copied..i]);
            out.push_str(&format!("emu_asm({tmpl}, {{{outs}}}, {{{ins}}})"));
            out.push_str(&newlines(&src[i..end]));
            i = end;
            copied = i;
            continue;
        }
        i += 1;
    }
    out.push_str(&src[copied..]);
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Building the emulator: one translation unit per kernel source, each object cached by a hash of
// everything it is compiled from.

fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h = 0xcbf29ce484222325u64;
    for p in parts {
        for b in p.iter().chain(&[0xff]) {
            h = (h ^ *b as u64).wrapping_mul(0x100000001b3);
        }
    }
    h
}

pub fn find_compiler() -> Option<(String, String)> {
    let candidates = std::env::var("CXX").into_iter().chain(["g++".to_string(), "clang++".to_string()]);
    for cxx in candidates {
        if let Ok(o) = Command::new(&cxx).arg("--version").output() {
            if o.status.success() {
                return Some((cxx, String::from_utf8_lossy(&o.stdout).into_owned()));
            }
        }
    }
    None
}

const CXXFLAGS: &[&str] = &[
    "-std=c++17",
    "-O2",
    // Kernels pun 16-bit storage through 32/128-bit loads; f32 maths must be IEEE (no FMA
    // contraction, so results are reproducible and __fmul_rn-style intrinsics exact).
    "-fno-strict-aliasing",
    "-ffp-contract=off",
    "-fno-fast-math",
    // A misaligned typed access (a vector load, a 32-bit pun of 16-bit pairs) faults on a GPU:
    // trap on it (SIGILL, reported with the kernel, block and thread).
    "-fsanitize=alignment",
    "-fsanitize-undefined-trap-on-error",
    "-Wno-unknown-pragmas",
];

struct Unit {
    /// Object name stem.
    name: String,
    /// The .cpp text, and extra files it includes (written next to it).
    cpp: String,
    files: Vec<(String, String)>,
    /// Where the .cpp already is (the runtime); None: written to the build directory.
    path: Option<PathBuf>,
}

fn kernel_unit(file: &str, src: &str, entries: &[String]) -> Result<Unit, String> {
    let stem: String =
        file.trim_end_matches(".cu").chars().map(|c| if is_ident(c as u8) { c } else { '_' }).collect();
    let mut body = rewrite(src).map_err(|e| format!("{file}: {e}"))?;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("cuda").join(file);
    if path.exists() {
        // Compiler messages point into the real source (the rewrite keeps line numbers).
        body = format!("#line 1 \"{}\"\n{body}", path.display());
    }
    let list: Vec<String> = entries.iter().map(|e| format!("    EMU_ENTRY(\"{file}\", k, {e}),")).collect();
    // Internal linkage for everything of the file (shared helpers included): inline functions'
    // static `__shared__` variables then need no COMDAT, which a named section cannot hold.
    let cpp = format!(
        "// Generated by kernels/tests/emu.rs from {file}.\n#include \"cuda_emu.h\"\nnamespace {{\nnamespace k \
         {{\n#include \"focus_common.cuh\"\n#include \"{stem}.emu.cu\"\n}}\nconst EmuEntry entries[] = \
         {{\n{}\n}};\nEmuRegistrar registrar(entries, sizeof entries / sizeof entries[0]);\n}}\n",
        list.join("\n")
    );
    Ok(Unit { name: stem.clone(), cpp, files: vec![(format!("{stem}.emu.cu"), body)], path: None })
}

/// Compile (or reuse) the emulator binary with every kernel source and `generated` kernels.
pub fn build(cxx: &str, version: &str, generated: &[(String, String)]) -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/cuda-emu");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cuda-emu");
    let src_dir = dir.join("src");
    std::fs::create_dir_all(&src_dir).map_err(|e| e.to_string())?;
    let read = |p: PathBuf| std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()));
    let headers: Vec<String> =
        ["include/cuda_emu.h", "include/cuda_fp16.h", "include/cuda_bf16.h", "src/emu_runtime.h"]
            .iter()
            .map(|h| read(root.join(h)))
            .collect::<Result<_, _>>()?;
    let mut units = Vec::new();
    for name in ["runtime", "server"] {
        let path = root.join(format!("src/{name}.cpp"));
        units.push(Unit { name: name.into(), cpp: read(path.clone())?, files: vec![], path: Some(path) });
    }
    for (file, src) in SOURCES {
        units.push(kernel_unit(file, src, &entry_points(src))?);
    }
    for (entry, src) in generated {
        units.push(kernel_unit(&format!("{entry}.cu"), src, std::slice::from_ref(entry))?);
        // Registered under the pseudo file the plans name.
        let u = units.last_mut().expect("pushed");
        u.cpp = u.cpp.replace(&format!("EMU_ENTRY(\"{entry}.cu\""), &format!("EMU_ENTRY(\"{GENERATED}\""));
    }
    // Extra flags for debugging the emulator (e.g. "-O0 -g", "-DEMU_UCONTEXT").
    let extra_env = std::env::var("EMU_CXXFLAGS").unwrap_or_default();
    let flags: Vec<&str> = CXXFLAGS.iter().copied().chain(extra_env.split_whitespace()).collect();
    let mut base: Vec<&[u8]> = vec![version.as_bytes(), COMMON_HEADER.1.as_bytes()];
    base.extend(flags.iter().map(|f| f.as_bytes()));
    base.extend(headers.iter().map(|h| h.as_bytes()));
    let base = fnv(&base).to_le_bytes();
    std::fs::write(src_dir.join(COMMON_HEADER.0), COMMON_HEADER.1).map_err(|e| e.to_string())?;
    let includes =
        [format!("-I{}", root.join("include").display()), format!("-I{}", root.join("src").display())];
    let mut objects = Vec::new();
    let mut todo = Vec::new();
    for u in &units {
        let mut parts: Vec<&[u8]> = vec![&base, u.cpp.as_bytes()];
        parts.extend(u.files.iter().map(|f| f.1.as_bytes()));
        let obj = dir.join(format!("obj/{}-{:016x}.o", u.name, fnv(&parts)));
        if !obj.exists() {
            let cpp = match &u.path {
                Some(p) => p.clone(),
                None => {
                    let cpp = src_dir.join(format!("{}.cpp", u.name));
                    std::fs::write(&cpp, &u.cpp).map_err(|e| e.to_string())?;
                    for (f, text) in &u.files {
                        std::fs::write(src_dir.join(f), text).map_err(|e| e.to_string())?;
                    }
                    cpp
                }
            };
            todo.push((cpp, obj.clone()));
        }
        objects.push(obj);
    }
    std::fs::create_dir_all(dir.join("obj")).map_err(|e| e.to_string())?;
    if !todo.is_empty() {
        println!("cuda-emu: compiling {} of {} translation units with {cxx}", todo.len(), units.len());
    }
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    for chunk in todo.chunks(jobs) {
        let running: Vec<_> = chunk
            .iter()
            .map(|(cpp, obj)| {
                let tmp = obj.with_extension(format!("{}.tmp", std::process::id()));
                let child = Command::new(cxx)
                    .args(&flags)
                    .args(&includes)
                    .arg("-c")
                    .arg(cpp)
                    .arg("-o")
                    .arg(&tmp)
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|e| format!("{cxx}: {e}"));
                (child, cpp, tmp, obj)
            })
            .collect();
        for (child, cpp, tmp, obj) in running {
            let o = child?.wait_with_output().map_err(|e| e.to_string())?;
            if !o.status.success() {
                return Err(format!("{} failed:\n{}", cpp.display(), String::from_utf8_lossy(&o.stderr)));
            }
            std::fs::rename(&tmp, obj).map_err(|e| e.to_string())?;
        }
    }
    let names: Vec<String> = objects.iter().map(|o| o.display().to_string()).collect();
    let joined = names.join(" ");
    let bin = dir.join(format!("cuda-emu-{:016x}", fnv(&[joined.as_bytes()])));
    if !bin.exists() {
        let tmp = bin.with_extension(format!("{}.tmp", std::process::id()));
        let o = Command::new(cxx).args(&objects).arg("-o").arg(&tmp).output().map_err(|e| e.to_string())?;
        if !o.status.success() {
            return Err(format!("link failed:\n{}", String::from_utf8_lossy(&o.stderr)));
        }
        std::fs::rename(&tmp, &bin).map_err(|e| e.to_string())?;
        // Drop what earlier sources left behind.
        let keep: Vec<PathBuf> = objects.iter().cloned().chain([bin.clone()]).collect();
        for d in [dir.clone(), dir.join("obj")] {
            for f in std::fs::read_dir(&d).map_err(|e| e.to_string())?.flatten() {
                let p = f.path();
                if p.is_file() && !keep.contains(&p) {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
    }
    Ok(bin)
}

// ---------------------------------------------------------------------------------------------
// One emulator process (tools/cuda-emu/src/server.cpp documents the protocol).

pub struct Emu {
    child: std::process::Child,
    input: BufWriter<std::process::ChildStdin>,
    output: BufReader<std::process::ChildStdout>,
    stderr: std::thread::JoinHandle<String>,
    /// Allocated buffers: (address, length).
    bufs: Vec<(u64, usize)>,
}

pub type Io<T> = std::io::Result<T>;

impl Emu {
    pub fn spawn(bin: &Path, adversarial: bool) -> Io<Emu> {
        let mut child = Command::new(bin)
            .env("EMU_SCHEDULE", if adversarial { "adversarial" } else { "default" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut err = child.stderr.take().expect("piped");
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let input = BufWriter::with_capacity(1 << 20, child.stdin.take().expect("piped"));
        let output = BufReader::new(child.stdout.take().expect("piped"));
        Ok(Emu { child, input, output, stderr, bufs: Vec::new() })
    }

    fn read_u64(&mut self) -> Io<u64> {
        let mut b = [0u8; 8];
        self.output.read_exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Allocate buffers (at least one byte each); returns their indices.
    pub fn alloc(&mut self, lens: &[usize]) -> Io<Vec<usize>> {
        self.input.write_all(b"A")?;
        self.input.write_all(&(lens.len() as u32).to_le_bytes())?;
        for l in lens {
            self.input.write_all(&(*l.max(&1) as u64).to_le_bytes())?;
        }
        self.input.flush()?;
        let mut idx = Vec::new();
        for l in lens {
            let a = self.read_u64()?;
            idx.push(self.bufs.len());
            self.bufs.push((a, *l));
        }
        Ok(idx)
    }

    pub fn addr(&self, i: usize) -> u64 {
        self.bufs[i].0
    }

    pub fn write(&mut self, i: usize, data: &[u8]) -> Io<()> {
        self.input.write_all(b"W")?;
        self.input.write_all(&(i as u32).to_le_bytes())?;
        self.input.write_all(&(data.len() as u64).to_le_bytes())?;
        self.input.write_all(data)
    }

    pub fn call(&mut self, c: &Call) -> Io<()> {
        let w = &mut self.input;
        let u64s = |w: &mut BufWriter<_>, v: &[u64]| v.iter().try_for_each(|x| w.write_all(&x.to_le_bytes()));
        match c {
            Call::Kernel(k) => {
                w.write_all(b"K")?;
                for s in [k.file, k.entry.as_str()] {
                    w.write_all(&(s.len() as u16).to_le_bytes())?;
                    w.write_all(s.as_bytes())?;
                }
                for v in [k.grid.0, k.grid.1, k.grid.2, k.block.0, k.block.1, k.block.2, k.smem] {
                    w.write_all(&v.to_le_bytes())?;
                }
                w.write_all(&(k.args.len() as u32).to_le_bytes())?;
                for a in &k.args {
                    let (kind, bytes) = match a {
                        Arg::Ptr(p) => (b'P', p.to_le_bytes().to_vec()),
                        Arg::I32(v) => (b'I', v.to_le_bytes().to_vec()),
                        Arg::U64(v) => (b'U', v.to_le_bytes().to_vec()),
                        Arg::F32(v) => (b'F', v.to_le_bytes().to_vec()),
                        Arg::Bytes(b) => (b'B', b.clone()),
                        Arg::Const(b) => (b'C', b.clone()),
                    };
                    w.write_all(&[kind])?;
                    w.write_all(&(bytes.len() as u32).to_le_bytes())?;
                    w.write_all(&bytes)?;
                }
            }
            Call::Gemm(g) => {
                let dt = match g.dtype {
                    GemmType::F32 => 0u8,
                    GemmType::F16 => 1,
                    GemmType::BF16 => 2,
                };
                w.write_all(&[b'G', dt])?;
                u64s(w, &[g.m as u64, g.n as u64, g.k as u64, g.batch as u64, g.a, g.b, g.c])?;
                w.write_all(&[g.trans_a as u8, g.trans_b as u8])?;
                u64s(w, &[g.stride_a as u64, g.stride_b as u64, g.stride_c as u64])?;
                w.write_all(&g.alpha.to_le_bytes())?;
                w.write_all(&g.beta.to_le_bytes())?;
                w.write_all(&g.bias.to_le_bytes())?;
            }
            Call::Memset { ptr, bytes, value } => {
                w.write_all(b"S")?;
                u64s(w, &[*ptr, *bytes as u64])?;
                w.write_all(&[*value])?;
            }
            Call::Copy { src, dst, bytes } => {
                w.write_all(b"Y")?;
                u64s(w, &[*src, *dst, *bytes as u64])?;
            }
        }
        Ok(())
    }

    pub fn read(&mut self, i: usize) -> Io<Vec<u8>> {
        self.input.write_all(b"R")?;
        self.input.write_all(&(i as u32).to_le_bytes())?;
        self.input.flush()?;
        let n = self.read_u64()? as usize;
        let mut v = vec![0u8; n];
        self.output.read_exact(&mut v)?;
        v.truncate(self.bufs[i].1);
        Ok(v)
    }

    /// End the session (the emulator checks for writes past any buffer); returns its warnings,
    /// or everything it said on a failure.
    pub fn finish(mut self, io: Io<()>) -> Result<String, String> {
        let io = io.and_then(|_| {
            self.input.write_all(b"E")?;
            self.input.flush()
        });
        drop(self.input);
        let status = self.child.wait().map_err(|e| e.to_string())?;
        let err = self.stderr.join().unwrap_or_default();
        if !status.success() || io.is_err() {
            let why = if err.trim().is_empty() { format!("emulator {status}, {io:?}") } else { err };
            return Err(why.trim().to_string());
        }
        Ok(err.trim().to_string())
    }
}
