//! Weights module: round trips, sharding, conversion, validation and hostile inputs.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use focus_engine::weights::{save, ExpectedTensor, SafetensorsFile, WeightError, WeightStore};
use focus_graph::DType;
use half::{bf16, f16};
use rand::{rngs::StdRng, Rng, SeedableRng};

// ---------- helpers ----------

/// A unique scratch directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("focus-weights-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Random bytes that are a valid value of `dtype` (bools are 0/1).
fn random_bytes(rng: &mut StdRng, dtype: DType, numel: usize) -> Vec<u8> {
    let n = numel * dtype.size_in_bytes();
    (0..n).map(|_| if dtype == DType::Bool { rng.gen_range(0..2u8) } else { rng.gen() }).collect()
}

/// A safetensors file built by hand: length prefix, header text, data.
fn raw_file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Opens `bytes` as a file, asserting it is rejected without panicking; returns the message.
fn rejection(dir: &TempDir, name: &str, bytes: &[u8]) -> String {
    let path = dir.path(name);
    std::fs::write(&path, bytes).unwrap();
    let result = std::panic::catch_unwind(|| SafetensorsFile::open(&path).map(|_| ()));
    match result {
        Ok(Ok(())) => panic!("{name}: malformed file was accepted"),
        Ok(Err(e)) => {
            let msg = e.to_string();
            assert!(msg.contains(name), "message should name the file: {msg}");
            msg
        }
        Err(_) => panic!("{name}: open panicked"),
    }
}

fn assert_contains(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "expected {p:?} in message: {msg}");
    }
}

type Owned = (String, DType, Vec<usize>, Vec<u8>);

/// One tensor per dtype plus a scalar and an empty tensor.
fn sample_tensors(rng: &mut StdRng) -> Vec<Owned> {
    let mut out: Vec<Owned> = DType::ALL
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            let shape = vec![i + 1, 3];
            let bytes = random_bytes(rng, d, (i + 1) * 3);
            (format!("t.{}", d.short_name()), d, shape, bytes)
        })
        .collect();
    out.push(("scalar".into(), DType::F32, vec![], random_bytes(rng, DType::F32, 1)));
    out.push(("empty".into(), DType::I64, vec![0, 4], vec![]));
    out
}

fn save_owned(path: &Path, tensors: &[Owned], meta: Option<&BTreeMap<String, String>>) {
    let refs: Vec<_> =
        tensors.iter().map(|(n, d, s, b)| (n.as_str(), *d, s.as_slice(), b.as_slice())).collect();
    save(path, &refs, meta).unwrap();
}

fn st_dtype(d: DType) -> safetensors::Dtype {
    match d {
        DType::F32 => safetensors::Dtype::F32,
        DType::F16 => safetensors::Dtype::F16,
        DType::BF16 => safetensors::Dtype::BF16,
        DType::I32 => safetensors::Dtype::I32,
        DType::I64 => safetensors::Dtype::I64,
        DType::U8 => safetensors::Dtype::U8,
        DType::Bool => safetensors::Dtype::BOOL,
    }
}

fn check_matches(file: &SafetensorsFile, tensors: &[Owned]) {
    assert_eq!(file.len(), tensors.len());
    for (name, dtype, shape, bytes) in tensors {
        let v = file.get(name).unwrap();
        assert_eq!(v.dtype, *dtype, "{name}");
        assert_eq!(v.shape, shape.as_slice(), "{name}");
        assert_eq!(v.bytes, bytes.as_slice(), "{name}");
        assert_eq!(v.numel(), shape.iter().product::<usize>());
    }
}

// ---------- round trips ----------

#[test]
fn round_trip_own_writer_every_dtype() {
    let dir = TempDir::new();
    let mut rng = StdRng::seed_from_u64(1);
    let tensors = sample_tensors(&mut rng);
    let meta: BTreeMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    let path = dir.path("own.safetensors");
    save_owned(&path, &tensors, Some(&meta));

    let file = SafetensorsFile::open(&path).unwrap();
    check_matches(&file, &tensors);
    assert_eq!(file.metadata(), &meta);
    // The writer orders tensors by element size, so every tensor is aligned in the map.
    for (name, ..) in &tensors {
        assert!(file.get(name).unwrap().is_aligned(), "{name} should be aligned");
    }

    // Header is padded to a multiple of 8 with spaces.
    let raw = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(raw[..8].try_into().unwrap()) as usize;
    assert_eq!(n % 8, 0);

    // The reference implementation reads our file identically.
    let st = safetensors::SafeTensors::deserialize(&raw).unwrap();
    for (name, dtype, shape, bytes) in &tensors {
        let t = st.tensor(name).unwrap();
        assert_eq!(t.dtype(), st_dtype(*dtype));
        assert_eq!(t.shape(), shape.as_slice());
        assert_eq!(t.data(), bytes.as_slice());
    }

    let store = WeightStore::open(&path).unwrap();
    assert_eq!(store.metadata(), &meta);
    let total: usize = tensors.iter().map(|t| t.3.len()).sum();
    assert_eq!(store.total_bytes(), total as u64);
    let mut names: Vec<&str> = tensors.iter().map(|t| t.0.as_str()).collect();
    names.sort();
    assert_eq!(store.names(), names);
}

#[test]
fn round_trip_safetensors_crate_every_dtype() {
    let dir = TempDir::new();
    let mut rng = StdRng::seed_from_u64(2);
    let tensors = sample_tensors(&mut rng);
    let path = dir.path("crate.safetensors");
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (n.clone(), safetensors::tensor::TensorView::new(st_dtype(*d), s.clone(), b).unwrap())
        })
        .collect();
    let meta: HashMap<String, String> = [("k".to_string(), "v".to_string())].into();
    safetensors::tensor::serialize_to_file(views, Some(meta), &path).unwrap();

    let file = SafetensorsFile::open(&path).unwrap();
    check_matches(&file, &tensors);
    assert_eq!(file.metadata().get("k").map(String::as_str), Some("v"));
    let store = WeightStore::open(&path).unwrap();
    for (name, dtype, shape, _) in &tensors {
        assert_eq!(store.info(name), Some((*dtype, shape.as_slice())));
    }
    assert!(store.info("nope").is_none());
    let err = store.get("nope").unwrap_err().to_string();
    assert_contains(&err, &["nope", "crate.safetensors"]);
}

#[test]
fn unaligned_tensor_is_reported_and_still_loads() {
    let dir = TempDir::new();
    // A 1-byte tensor first pushes the f32 tensor to data offset 1.
    let header = r#"{"b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"F32","shape":[2],"data_offsets":[1,9]}}"#;
    let mut data = vec![7u8];
    data.extend_from_slice(&1.5f32.to_le_bytes());
    data.extend_from_slice(&(-2.0f32).to_le_bytes());
    // Pad the header so the data section itself starts 8-aligned.
    let header = format!("{header:<width$}", width = header.len().next_multiple_of(8));
    let path = dir.path("unaligned.safetensors");
    std::fs::write(&path, raw_file(&header, &data)).unwrap();
    let store = WeightStore::open(&path).unwrap();
    assert!(!store.get("w").unwrap().is_aligned());
    assert!(store.get("b").unwrap().is_aligned());
    assert_eq!(store.get_f32("w").unwrap(), vec![1.5, -2.0]);
}

// ---------- sharded checkpoints and directories ----------

fn write_sharded(dir: &TempDir, rng: &mut StdRng) -> Vec<Owned> {
    let tensors = sample_tensors(rng);
    let (a, b) = tensors.split_at(4);
    save_owned(&dir.path("model-00001-of-00002.safetensors"), a, None);
    save_owned(&dir.path("model-00002-of-00002.safetensors"), b, None);
    let mut map = serde_json::Map::new();
    for (n, ..) in a {
        map.insert(n.clone(), "model-00001-of-00002.safetensors".into());
    }
    for (n, ..) in b {
        map.insert(n.clone(), "model-00002-of-00002.safetensors".into());
    }
    let index = serde_json::json!({"metadata": {"total_size": 1234}, "weight_map": map});
    std::fs::write(dir.path("model.safetensors.index.json"), index.to_string()).unwrap();
    tensors
}

#[test]
fn sharded_index_round_trip() {
    let dir = TempDir::new();
    let mut rng = StdRng::seed_from_u64(3);
    let tensors = write_sharded(&dir, &mut rng);
    for source in [dir.path("model.safetensors.index.json"), dir.0.clone()] {
        let store = WeightStore::open(&source).unwrap();
        assert_eq!(store.files().len(), 2, "each shard opened once");
        assert_eq!(store.len(), tensors.len());
        assert_eq!(store.metadata().get("total_size").map(String::as_str), Some("1234"));
        for (name, dtype, shape, bytes) in &tensors {
            let v = store.get(name).unwrap();
            assert_eq!((v.dtype, v.shape, v.bytes), (*dtype, shape.as_slice(), bytes.as_slice()));
        }
    }
}

#[test]
fn sharded_index_errors_name_the_problem() {
    let dir = TempDir::new();
    let mut rng = StdRng::seed_from_u64(4);
    write_sharded(&dir, &mut rng);
    let index = dir.path("model.safetensors.index.json");

    // A tensor mapped to a shard that does not hold it.
    let text = std::fs::read_to_string(&index).unwrap();
    let ghost = text
        .replace(r#""weight_map":{"#, r#""weight_map":{"ghost.weight":"model-00001-of-00002.safetensors","#);
    std::fs::write(&index, &ghost).unwrap();
    let msg = WeightStore::open(&index).unwrap_err().to_string();
    assert_contains(&msg, &["ghost.weight", "model-00001-of-00002.safetensors"]);

    // A shard file that does not exist.
    let missing =
        text.replace(r#""weight_map":{"#, r#""weight_map":{"x":"model-00009-of-00009.safetensors","#);
    std::fs::write(&index, &missing).unwrap();
    let msg = WeightStore::open(&index).unwrap_err().to_string();
    assert_contains(&msg, &["model-00009-of-00009.safetensors", "not found"]);

    // Shard paths may not escape the directory.
    let escape = text.replace(r#""weight_map":{"#, r#""weight_map":{"x":"../evil.safetensors","#);
    std::fs::write(&index, &escape).unwrap();
    let msg = WeightStore::open(&index).unwrap_err().to_string();
    assert_contains(&msg, &["../evil.safetensors"]);

    for bad in ["[]", "{}", r#"{"weight_map": 3}"#, r#"{"weight_map": {"a": 1}}"#, "not json"] {
        std::fs::write(&index, bad).unwrap();
        let err = WeightStore::open(&index).unwrap_err();
        assert!(matches!(err, WeightError::BadIndex { .. }), "{bad}: {err}");
    }
}

#[test]
fn directory_without_index() {
    let dir = TempDir::new();
    let mut rng = StdRng::seed_from_u64(5);
    let tensors = sample_tensors(&mut rng);
    save_owned(&dir.path("a.safetensors"), &tensors[..3], None);
    save_owned(&dir.path("b.safetensors"), &tensors[3..], None);
    std::fs::write(dir.path("README.md"), "not weights").unwrap();
    let store = WeightStore::open(&dir.0).unwrap();
    assert_eq!(store.len(), tensors.len());
    for (name, _, _, bytes) in &tensors {
        assert_eq!(store.get(name).unwrap().bytes, bytes.as_slice());
    }

    // The same name in two files is ambiguous.
    save_owned(&dir.path("c.safetensors"), &tensors[..1], None);
    let msg = WeightStore::open(&dir.0).unwrap_err().to_string();
    assert_contains(&msg, &[&tensors[0].0, "a.safetensors", "c.safetensors"]);

    let empty = TempDir::new();
    let err = WeightStore::open(&empty.0).unwrap_err();
    assert!(matches!(err, WeightError::NoWeightFiles { .. }), "{err}");
}

// ---------- conversion ----------

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn float_conversions() {
    let dir = TempDir::new();
    let values = [0.0f32, 1.0, -2.5, 0.1, std::f32::consts::PI, 65504.0, 1e-6, -1e30, f32::INFINITY];
    let bf: Vec<u8> = values.iter().flat_map(|&x| bf16::from_f32(x).to_le_bytes()).collect();
    let hf: Vec<u8> = values.iter().flat_map(|&x| f16::from_f32(x).to_le_bytes()).collect();
    let path = dir.path("floats.safetensors");
    let shape = [values.len()];
    let f32b = f32_bytes(&values);
    save(
        &path,
        &[
            ("f32", DType::F32, &shape, &f32b),
            ("bf16", DType::BF16, &shape, &bf),
            ("f16", DType::F16, &shape, &hf),
        ],
        None,
    )
    .unwrap();
    let store = WeightStore::open(&path).unwrap();

    // Same dtype borrows straight from the map.
    assert!(matches!(store.get_as("f32", DType::F32).unwrap(), Cow::Borrowed(_)));
    // f32 -> bf16 / f16 rounds like `half`.
    assert_eq!(store.get_as("f32", DType::BF16).unwrap().as_ref(), bf.as_slice());
    assert_eq!(store.get_as("f32", DType::F16).unwrap().as_ref(), hf.as_slice());
    // bf16 / f16 -> f32 is exact.
    let from_bf: Vec<f32> = values.iter().map(|&x| bf16::from_f32(x).to_f32()).collect();
    assert_eq!(store.get_f32("bf16").unwrap(), from_bf);
    let from_hf: Vec<f32> = values.iter().map(|&x| f16::from_f32(x).to_f32()).collect();
    assert_eq!(store.get_f32("f16").unwrap(), from_hf);
    // bf16 -> f16 goes through the exact f32 value.
    let expect: Vec<u8> = from_bf.iter().flat_map(|&x| f16::from_f32(x).to_le_bytes()).collect();
    assert_eq!(store.get_as("bf16", DType::F16).unwrap().as_ref(), expect.as_slice());
    assert_eq!(store.get_f32("f32").unwrap(), values.to_vec());
}

#[test]
fn integer_and_bool_conversions() {
    let dir = TempDir::new();
    let path = dir.path("ints.safetensors");
    let i64s: Vec<u8> = [0i64, -3, 200, 1 << 40].iter().flat_map(|x| x.to_le_bytes()).collect();
    let small: Vec<u8> = [0i64, 1, 200, 7].iter().flat_map(|x| x.to_le_bytes()).collect();
    let floats = f32_bytes(&[0.0, 2.0, -7.0, 1.5]);
    let whole = f32_bytes(&[0.0, 2.0, -7.0, 100.0]);
    let bools = [0u8, 1, 0, 1];
    let s = [4usize];
    save(
        &path,
        &[
            ("big", DType::I64, &s, &i64s),
            ("small", DType::I64, &s, &small),
            ("frac", DType::F32, &s, &floats),
            ("whole", DType::F32, &s, &whole),
            ("mask", DType::Bool, &s, &bools),
        ],
        None,
    )
    .unwrap();
    let store = WeightStore::open(&path).unwrap();

    assert_eq!(store.get_f32("big").unwrap(), vec![0.0, -3.0, 200.0, (1u64 << 40) as f32]);
    assert_eq!(store.get_as("small", DType::U8).unwrap().as_ref(), &[0, 1, 200, 7]);
    let i32s: Vec<u8> = [0i32, 2, -7, 100].iter().flat_map(|x| x.to_le_bytes()).collect();
    assert_eq!(store.get_as("whole", DType::I32).unwrap().as_ref(), i32s.as_slice());
    assert_eq!(store.get_as("whole", DType::Bool).unwrap().as_ref(), &[0, 1, 1, 1]);
    assert_eq!(store.get_f32("mask").unwrap(), vec![0.0, 1.0, 0.0, 1.0]);
    assert_eq!(store.get_as("mask", DType::I64).unwrap().as_ref(), small_of(&[0, 1, 0, 1]).as_slice());

    // Lossy integer conversions are refused with the tensor named.
    let msg = store.get_as("big", DType::I32).unwrap_err().to_string();
    assert_contains(&msg, &["big", "i64", "i32", "out of range"]);
    let msg = store.get_as("big", DType::U8).unwrap_err().to_string();
    assert_contains(&msg, &["big", "-3"]);
    let msg = store.get_as("frac", DType::I64).unwrap_err().to_string();
    assert_contains(&msg, &["frac", "1.5"]);
}

fn small_of(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

// ---------- validation ----------

#[test]
fn validate_reports_every_problem_at_once() {
    let dir = TempDir::new();
    let path = dir.path("v.safetensors");
    let w = f32_bytes(&[0.0; 6]);
    let b = vec![0u8; 6];
    save(
        &path,
        &[
            ("ok.weight", DType::F32, &[2, 3], &w),
            ("wrong.shape", DType::F32, &[3, 2], &w),
            ("half.bias", DType::BF16, &[3], &b),
            ("extra.head", DType::U8, &[6], &b),
        ],
        None,
    )
    .unwrap();
    let store = WeightStore::open(&path).unwrap();
    let expected = [
        ExpectedTensor::new("ok.weight", DType::F32, &[2, 3]),
        ExpectedTensor::new("wrong.shape", DType::F32, &[2, 3]),
        ExpectedTensor::new("half.bias", DType::F32, &[3]),
        ExpectedTensor::new("gone.one", DType::F32, &[4]),
        ExpectedTensor::new("gone.two", DType::I64, &[1]),
    ];
    let err = store.validate(&expected).unwrap_err();
    let msg = err.to_string();
    if std::env::var_os("SHOW_ERRORS").is_some() {
        println!("{msg}");
    }
    let WeightError::Mismatch(report) = err else { panic!("expected Mismatch, got {msg}") };
    let missing: Vec<&str> = report.missing.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(missing, ["gone.one", "gone.two"]);
    assert_eq!(report.shape_mismatches.len(), 1);
    assert_eq!(report.shape_mismatches[0].found, vec![3, 2]);
    assert_eq!(report.dtype_differences.len(), 1);
    assert_eq!(report.unexpected, vec!["extra.head".to_string()]);
    assert_contains(
        &msg,
        &[
            "gone.one",
            "gone.two",
            "wrong.shape",
            "[2, 3]",
            "[3, 2]",
            "half.bias",
            "bf16",
            "extra.head",
            "v.safetensors",
        ],
    );
    // One line per problem plus a summary line.
    assert_eq!(msg.lines().count(), 1 + 2 + 1 + 1 + 1);

    // Only warnings: validation passes and returns them.
    let report = store
        .validate(&expected[..3].iter().filter(|e| e.name != "wrong.shape").cloned().collect::<Vec<_>>());
    let report = report.unwrap();
    assert!(!report.is_fatal());
    assert_eq!(report.unexpected, vec!["extra.head".to_string(), "wrong.shape".to_string()]);
}

// ---------- writer input checks ----------

#[test]
fn writer_rejects_inconsistent_input() {
    let dir = TempDir::new();
    let path = dir.path("bad-write.safetensors");
    let msg = save(&path, &[("w", DType::F32, &[2, 2], &[0u8; 15])], None).unwrap_err().to_string();
    assert_contains(&msg, &["'w'", "16", "15"]);
    let msg = save(&path, &[("w", DType::U8, &[1], &[0]), ("w", DType::U8, &[1], &[0])], None)
        .unwrap_err()
        .to_string();
    assert_contains(&msg, &["'w'", "duplicate"]);
    let msg = save(&path, &[("__metadata__", DType::U8, &[1], &[0])], None).unwrap_err().to_string();
    assert_contains(&msg, &["reserved"]);
    let msg = save(&path, &[("huge", DType::F32, &[usize::MAX, 2], &[])], None).unwrap_err().to_string();
    assert_contains(&msg, &["huge", "overflows"]);
}

// ---------- malformed files ----------

const GOOD_HEADER: &str = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;

#[test]
fn truncated_files_are_rejected() {
    let dir = TempDir::new();
    let mut rng = StdRng::seed_from_u64(6);
    let path = dir.path("whole.safetensors");
    save_owned(&path, &sample_tensors(&mut rng), None);
    let full = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(full[..8].try_into().unwrap()) as usize;
    let cuts = [0, 3, 7, 8, 9, 8 + n / 2, 8 + n - 1, 8 + n + 1, full.len() - 1];
    for cut in cuts {
        let name = format!("cut-{cut}.safetensors");
        let msg = rejection(&dir, &name, &full[..cut]);
        if cut < 8 {
            assert_contains(&msg, &["shorter than"]);
        } else if cut < 8 + n {
            assert_contains(&msg, &["does not fit"]);
        } else {
            assert_contains(&msg, &["beyond the", "data section"]);
        }
    }
}

#[test]
fn malformed_headers_are_rejected_with_clear_errors() {
    let dir = TempDir::new();
    let data = [0u8; 8];
    let entry = |dtype: &str, shape: &str, offsets: &str| {
        format!(r#"{{"t":{{"dtype":"{dtype}","shape":{shape},"data_offsets":{offsets}}}}}"#)
    };
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "len-beyond",
            {
                let mut f = raw_file(GOOD_HEADER, &data);
                f[..8].copy_from_slice(&1000u64.to_le_bytes());
                f
            },
            vec!["1000", "does not fit"],
        ),
        (
            "len-absurd",
            {
                let mut f = raw_file(GOOD_HEADER, &data);
                f[..8].copy_from_slice(&u64::MAX.to_le_bytes());
                f
            },
            vec!["limit"],
        ),
        ("bad-json", raw_file(r#"{"a": {"dtype": "#, &data), vec!["not valid JSON"]),
        (
            "bad-utf8",
            raw_file("{\"\u{1}\"}", &data).into_iter().map(|b| if b == 1 { 0xff } else { b }).collect(),
            vec!["UTF-8"],
        ),
        ("empty-header", raw_file("", &data), vec!["JSON"]),
        ("array-json", raw_file("[1, 2]", &data), vec!["an array", "expected an object"]),
        ("string-json", raw_file(r#""hi""#, &data), vec!["a string"]),
        ("entry-not-object", raw_file(r#"{"t": 5}"#, &data), vec!["'t'", "a number"]),
        (
            "missing-dtype",
            raw_file(r#"{"t":{"shape":[2],"data_offsets":[0,8]}}"#, &data),
            vec!["'t'", "`dtype`"],
        ),
        (
            "missing-shape",
            raw_file(r#"{"t":{"dtype":"F32","data_offsets":[0,8]}}"#, &data),
            vec!["'t'", "`shape`"],
        ),
        (
            "missing-offsets",
            raw_file(r#"{"t":{"dtype":"F32","shape":[2]}}"#, &data),
            vec!["'t'", "`data_offsets`"],
        ),
        (
            "dtype-not-string",
            raw_file(&entry("F32", "[2]", "[0,8]").replace("\"F32\"", "7"), &data),
            vec!["'t'", "`dtype`"],
        ),
        ("unknown-dtype", raw_file(&entry("Q4", "[2]", "[0,8]"), &data), vec!["unsupported dtype Q4", "'t'"]),
        ("f64-dtype", raw_file(&entry("F64", "[1]", "[0,8]"), &data), vec!["unsupported dtype F64", "'t'"]),
        ("f8-dtype", raw_file(&entry("F8_E4M3", "[8]", "[0,8]"), &data), vec!["unsupported dtype F8_E4M3"]),
        ("negative-dim", raw_file(&entry("F32", "[-2]", "[0,8]"), &data), vec!["'t'", "negative"]),
        (
            "float-dim",
            raw_file(&entry("F32", "[2.0]", "[0,8]"), &data),
            vec!["'t'", "not a non-negative integer"],
        ),
        ("string-dim", raw_file(&entry("F32", r#"["2"]"#, "[0,8]"), &data), vec!["'t'", "`shape`[0]"]),
        ("shape-not-array", raw_file(&entry("F32", "2", "[0,8]"), &data), vec!["'t'", "`shape`"]),
        ("three-offsets", raw_file(&entry("F32", "[2]", "[0,4,8]"), &data), vec!["'t'", "3 elements"]),
        ("size-mismatch", raw_file(&entry("F32", "[3]", "[0,8]"), &data), vec!["'t'", "12 bytes", "span 8"]),
        ("begin-after-end", raw_file(&entry("F32", "[2]", "[8,0]"), &data), vec!["'t'", "begin 8 > end 0"]),
        ("out-of-range", raw_file(&entry("F32", "[4]", "[0,16]"), &data), vec!["'t'", "16", "beyond"]),
        (
            "huge-offsets",
            raw_file(&entry("U8", "[2]", "[18446744073709551613,18446744073709551615]"), &data),
            vec!["'t'", "beyond"],
        ),
        (
            "overflow-dims",
            raw_file(&entry("F32", "[4294967296,4294967296,4294967296]", "[0,8]"), &data),
            vec!["'t'", "overflows"],
        ),
        (
            "overflow-by-dtype",
            raw_file(&entry("I64", "[2305843009213693952]", "[0,8]"), &data),
            vec!["'t'", "overflows"],
        ),
        (
            "overlap",
            raw_file(
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]}}"#,
                &data,
            ),
            vec!["'a'", "'b'", "overlap"],
        ),
        (
            "overlap-same",
            raw_file(
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#,
                &data,
            ),
            vec!["'a'", "'b'", "overlap"],
        ),
        ("metadata-not-object", raw_file(r#"{"__metadata__": []}"#, &data), vec!["__metadata__"]),
        (
            "metadata-not-string",
            raw_file(r#"{"__metadata__": {"k": 1}}"#, &data),
            vec!["__metadata__", "'k'"],
        ),
    ];
    for (name, bytes, parts) in cases {
        let file = format!("{name}.safetensors");
        let msg = rejection(&dir, &file, &bytes);
        if std::env::var_os("SHOW_ERRORS").is_some() {
            println!("{msg}");
        }
        assert_contains(&msg, &parts);
    }

    // Sanity: the good header with its data is accepted, as are empty tensors sharing offsets.
    let ok = dir.path("good.safetensors");
    std::fs::write(&ok, raw_file(GOOD_HEADER, &data)).unwrap();
    assert!(SafetensorsFile::open(&ok).is_ok());
    let empties = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}}"#;
    std::fs::write(&ok, raw_file(empties, &data)).unwrap();
    assert!(SafetensorsFile::open(&ok).is_ok());
}

#[test]
fn missing_file_is_an_io_error() {
    let dir = TempDir::new();
    let path = dir.path("does-not-exist.safetensors");
    let msg = WeightStore::open(&path).unwrap_err().to_string();
    assert_contains(&msg, &["does-not-exist.safetensors", "open"]);
}

#[test]
fn fuzzed_headers_never_panic() {
    let dir = TempDir::new();
    let mut rng = StdRng::seed_from_u64(7);
    let path = dir.path("seed.safetensors");
    save_owned(&path, &sample_tensors(&mut rng), Some(&[("a".to_string(), "b".to_string())].into()));
    let original = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(original[..8].try_into().unwrap()) as usize;
    let target = dir.path("fuzz.safetensors");
    let interesting = b"{}[]\":,0123456789-.eE \x00\xff";
    let (mut ok, mut err) = (0, 0);
    for _ in 0..500 {
        let mut bytes = original.clone();
        for _ in 0..rng.gen_range(1..=4) {
            // Mostly the header text, sometimes the length prefix.
            let at = if rng.gen_bool(0.1) { rng.gen_range(0..8) } else { rng.gen_range(8..8 + n) };
            bytes[at] =
                if rng.gen_bool(0.5) { interesting[rng.gen_range(0..interesting.len())] } else { rng.gen() };
        }
        std::fs::write(&target, &bytes).unwrap();
        let outcome = std::panic::catch_unwind(|| {
            let opened = SafetensorsFile::open(&target);
            // Whatever opened must be readable without panicking too.
            if let Ok(f) = &opened {
                for name in f.names() {
                    let v = f.get(name).unwrap();
                    let _ = (v.is_aligned(), v.numel());
                }
            }
            opened.is_ok()
        });
        match outcome {
            Ok(true) => ok += 1,
            Ok(false) => err += 1,
            Err(_) => panic!("open panicked on mutated file {bytes:?}"),
        }
    }
    assert_eq!(ok + err, 500);
    assert!(err > 0, "mutations should break some files");
}
