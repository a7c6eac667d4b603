//! The CUDA side of a plan: one device arena at the planner's offsets, one slab holding every
//! weight and precomputed constant (uploaded from the memory map through pinned staging
//! buffers), device state buffers, and every step planned once into prepared launches
//! (`focus_kernels::cuda::ops::plan`). `execute` only enqueues work: launches (or one CUDA
//! graph replay) and the copies of the outputs back to host mirrors; reading an output waits.

use crate::buffer::AlignedBuf;
use crate::error::{EngineError, Result};
use crate::profiler::NodeProfile;
use cudarc::driver::{CudaGraph, CudaSlice};
use focus_graph::{Graph, NodeId};
use focus_kernels::cuda::device::{GpuDevice, Prepared};
use focus_kernels::cuda::fused::{self, FusedGroup};
use focus_kernels::cuda::launch::{Call, DevTensor, Scratch};
use focus_kernels::cuda::{ops, CudaError};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, Weak};

const ALIGN: usize = 256;

/// A node's host bytes for the device, with its parameter name when it is a weight.
pub(crate) type ConstData<'a> = (NodeId, &'a [u8], Option<&'a str>);

/// Identity of a weight on a device: the same source, name and dtype is the same bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct WeightKey {
    ordinal: usize,
    source: usize,
    name: String,
    dtype: focus_graph::DType,
}

/// The device copy of a weight, uploaded once while any plan holds it.
fn shared_weight(dev: &GpuDevice, key: WeightKey, bytes: &[u8]) -> Result<Arc<CudaSlice<u8>>> {
    static CACHE: OnceLock<Mutex<HashMap<WeightKey, Weak<CudaSlice<u8>>>>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .map_err(|_| cuda(CudaError::Driver("weight cache poisoned".into())))?;
    if let Some(w) = cache.get(&key).and_then(Weak::upgrade) {
        return Ok(w);
    }
    cache.retain(|_, w| w.strong_count() > 0);
    let buf = dev.alloc(bytes.len()).map_err(cuda)?;
    // SAFETY: the buffer was just allocated with this size.
    unsafe { dev.upload_staged(dev.ptr(&buf), bytes) }.map_err(cuda)?;
    let buf = Arc::new(buf);
    cache.insert(key, Arc::downgrade(&buf));
    Ok(buf)
}

/// Where a node's device bytes are, by storage root.
#[derive(Clone, Copy, Debug)]
pub(crate) enum DevLoc {
    Arena(usize),
    /// Offset into the plan's constant slab (folded constants).
    Const(usize),
    /// A weight in the device-wide cache.
    Shared,
    State,
}

pub(crate) struct CudaBackend {
    pub dev: Arc<GpuDevice>,
    /// The plan's activations: its own buffer, or a shared arena's (see `SharedArena`).
    arena: Arc<CudaSlice<u8>>,
    consts: CudaSlice<u8>,
    /// Weights by node, shared with other plans of the same source on this device.
    shared: HashMap<usize, Arc<CudaSlice<u8>>>,
    states: HashMap<usize, CudaSlice<u8>>,
    scratch: CudaSlice<u8>,
    /// Per node (by storage root): its device location; None for nodes without storage.
    locs: Vec<Option<DevLoc>>,
    /// Prepared launches per plan step, preceded by the flag reset.
    steps: Vec<Prepared>,
    graph: Option<CudaGraph>,
    /// Host copies of the outputs (with their device addresses, refreshed by `plan_steps`) and
    /// of the index-error flag, filled after every run.
    mirrors: Vec<(NodeId, u64, AlignedBuf)>,
    /// Which outputs are copied back after a run (`Plan::copy_outputs`): all by default.
    copied: Vec<bool>,
    flag_addr: u64,
    flag: AlignedBuf,
    pub const_bytes: usize,
    schedule: CudaSchedule,
}

/// By a group's last node: the group, its kernel entry and its external inputs.
type FusedByLast = HashMap<usize, (FusedGroup, String, Vec<NodeId>)>;

/// What the CUDA backend runs as one launch sequence, decided from the graph alone, before
/// memory planning, which must keep every span's values live across it (`plan_memory_spans`).
/// Set FOCUS_NO_FUSION=1 to run every node on its own.
#[derive(Default)]
pub struct Fusions {
    /// Elementwise fusion groups (their step members, at least two): one generated kernel at
    /// the last member.
    groups: Vec<Vec<NodeId>>,
    /// Pairs run at the first node, first → second: GroupNorm/SpatialNorm → SiLU (its only consumer;
    /// UNet/VAE resnets) writes only the SiLU; residual Add → RMSNorm/LayerNorm of the sum
    /// (transformer blocks) writes both; nearest upsample → the Conv2d reading it (UNet/VAE
    /// upsample blocks) writes only the conv (a resize the kernel cannot fold runs alone); RoPE
    /// → the KV-cache append of its result writes only the cache.
    pairs: HashMap<usize, NodeId>,
    /// Pairs run at the second node, second → first: a decode step's q RoPE folded into the
    /// attention reading it (its k and v are written after the RoPE runs).
    late: HashMap<usize, NodeId>,
}

impl Fusions {
    pub fn of(g: &Graph, steps: &[NodeId]) -> Self {
        use focus_graph::{BinaryOp, Op, UnaryOp};
        if std::env::var_os("FOCUS_NO_FUSION").is_some() {
            return Fusions::default();
        }
        let is_step: HashSet<usize> = steps.iter().map(|s| s.0).collect();
        let groups: Vec<Vec<NodeId>> = focus_graph::passes::fusion_groups(g)
            .into_iter()
            .map(|f| f.nodes.into_iter().filter(|n| is_step.contains(&n.0)).collect::<Vec<_>>())
            .filter(|nodes| nodes.len() > 1)
            .collect();
        let grouped: HashSet<usize> = groups.iter().flatten().map(|n| n.0).collect();
        let uses = g.use_counts();
        let mut pairs = HashMap::new();
        let mut late = HashMap::new();
        for &id in steps {
            let n = g.node(id);
            if grouped.contains(&id.0) {
                continue;
            }
            // Whether an input of a pair's second node exists when the pair runs at `id`.
            let ready = |i: &NodeId| {
                let r = g.storage_root(*i);
                *i == id || !is_step.contains(&r.0) || r.0 < id.0
            };
            match &n.op {
                Op::Unary(UnaryOp::Silu) => {
                    let src = n.inputs[0];
                    let p = g.node(src);
                    if matches!(p.op, Op::GroupNorm { .. } | Op::SpatialNorm { .. })
                        && is_step.contains(&src.0)
                        && uses[src.0] == 1
                        && p.dtype == n.dtype
                    {
                        pairs.insert(src.0, id);
                    }
                }
                // RoPE of k whose only reader appends it to the KV cache: rotate into the cache,
                // if nothing between the two reads that cache.
                Op::Rope { .. } if uses[id.0] == 1 => {
                    let w = steps.iter().filter(|s| s.0 > id.0).find(|s| g.node(**s).inputs.contains(&id));
                    if let Some(&w) = w {
                        let wn = g.node(w);
                        let state = g.storage_root(wn.inputs[0]);
                        let read_between = steps
                            .iter()
                            .filter(|s| s.0 > id.0 && s.0 < w.0)
                            .any(|s| g.node(*s).inputs.iter().any(|i| g.storage_root(*i) == state));
                        if matches!(wn.op, Op::WriteSlice { .. })
                            && wn.inputs[1] == id
                            && wn.inputs.iter().all(ready)
                            && !read_between
                        {
                            pairs.insert(id.0, w);
                        } else if matches!(wn.op, Op::Attention { .. })
                            && wn.inputs[0] == id
                            && matches!(n.op, Op::Rope { kind: focus_graph::RopeKind::OneD, .. })
                        {
                            late.insert(w.0, id);
                        }
                    }
                }
                // A nearest upsample read only by a convolution: the conv reads the small image.
                Op::Resize {
                    mode: focus_graph::ResizeMode::Nearest,
                    align_corners: false,
                    antialias: false,
                    ..
                } if uses[id.0] == 1 => {
                    let conv = steps.iter().filter(|s| s.0 > id.0).find(|s| g.node(**s).inputs.contains(&id));
                    if let Some(&conv) = conv {
                        let c = g.node(conv);
                        if matches!(c.op, Op::Conv2d(_))
                            && c.inputs[0] == id
                            && c.inputs[1..].iter().all(ready)
                        {
                            pairs.insert(id.0, conv);
                        }
                    }
                }
                Op::Binary(BinaryOp::Add)
                    if n.inputs
                        .iter()
                        .all(|i| g.node(*i).shape == n.shape && g.node(*i).dtype == n.dtype) =>
                {
                    // The first norm of the sum, if its weight and bias exist when the add runs.
                    let norm = steps.iter().filter(|s| s.0 > id.0).find(|s| {
                        let m = g.node(**s);
                        matches!(m.op, Op::RmsNorm { .. } | Op::LayerNorm { .. }) && m.inputs[0] == id
                    });
                    if let Some(&norm) = norm {
                        let m = g.node(norm);
                        if m.dtype == n.dtype && m.inputs[1..].iter().all(ready) {
                            pairs.insert(id.0, norm);
                        }
                    }
                }
                _ => {}
            }
        }
        Fusions { groups, pairs, late }
    }

    /// The fused pairs, (first, second) in step order.
    pub fn pairs(&self) -> Vec<(NodeId, NodeId)> {
        let mut v: Vec<_> = self.pairs.iter().map(|(a, b)| (NodeId(*a), *b)).collect();
        v.sort();
        v
    }

    /// The pairs run at their second node, (first, second) in step order.
    pub fn late_pairs(&self) -> Vec<(NodeId, NodeId)> {
        let mut v: Vec<_> = self.late.iter().map(|(b, a)| (*a, NodeId(*b))).collect();
        v.sort();
        v
    }

    /// The node sets each run as one launch sequence.
    pub fn spans(&self) -> Vec<Vec<NodeId>> {
        let pairs = self.pairs.iter().map(|(a, b)| vec![NodeId(*a), *b]);
        let late = self.late.iter().map(|(b, a)| vec![*a, NodeId(*b)]);
        self.groups.iter().cloned().chain(pairs).chain(late).collect()
    }
}

/// How a graph's steps become calls on a device, decided without one: the generated kernels
/// of the fusion groups (a group without one runs node by node) and the fused pairs. The
/// engine's CUDA plans and the emulator's whole-plan check both plan through `calls`.
pub struct CudaSchedule {
    /// By a group's last node: the group, its kernel entry and its external inputs; other
    /// members run nothing.
    fused: FusedByLast,
    fused_members: HashSet<usize>,
    /// Pairs run as one plan at the first node (`ops::plan_chain`): first → second.
    pairs: HashMap<usize, NodeId>,
    /// Pairs run as one plan at the second node: second → first.
    late: HashMap<usize, NodeId>,
    late_firsts: HashSet<usize>,
    /// Generated kernel sources, (entry, source).
    generated: Vec<(String, String)>,
}

impl CudaSchedule {
    pub fn new(g: &Graph, fusions: &Fusions) -> Self {
        let (mut fused, mut fused_members, mut generated) = (HashMap::new(), HashSet::new(), Vec::new());
        for nodes in &fusions.groups {
            let Some((fg, externals)) = fused::from_graph(g, nodes) else { continue };
            let Ok((entry, src)) = fg.source() else { continue };
            let (last, inner) = nodes.split_last().expect("at least two members");
            fused_members.extend(inner.iter().map(|n| n.0));
            generated.push((entry.clone(), src));
            fused.insert(last.0, (fg, entry, externals));
        }
        let late_firsts = fusions.late.values().map(|n| n.0).collect();
        CudaSchedule {
            fused,
            fused_members,
            pairs: fusions.pairs.clone(),
            late: fusions.late.clone(),
            late_firsts,
            generated,
        }
    }

    /// The generated kernels, (entry, source), for the device to compile.
    pub fn generated(&self) -> &[(String, String)] {
        &self.generated
    }

    /// Scratch bytes the steps need, given each node's device address.
    pub fn scratch_bytes(&self, g: &Graph, steps: &[NodeId], addr: &dyn Fn(NodeId) -> u64) -> usize {
        let mut need = 0;
        for &id in steps {
            let n = g.node(id);
            let ins: Vec<View> = n.inputs.iter().map(|i| view(g, *i, addr(*i))).collect();
            let out = view(g, id, addr(id));
            let (iv, ov) = dev_views(&ins, &out);
            need = need.max(ops::scratch_bytes(&n.op, &iv, &ov));
        }
        need
    }

    /// Every step's calls (none for members of a fused span but its planning node), given each
    /// node's device address. Steps without a CUDA plan are one error naming them all.
    pub fn calls(
        &self,
        g: &Graph,
        steps: &[NodeId],
        addr: &dyn Fn(NodeId) -> u64,
        scratch: Scratch,
    ) -> Result<Vec<Vec<Call>>> {
        let mut out_calls = Vec::with_capacity(steps.len());
        let mut unsupported = Vec::new();
        // Second nodes of pairs that turned out to have no fused plan: they run on their own.
        let mut unpaired = HashSet::new();
        for &id in steps {
            let n = g.node(id);
            let ins: Vec<View> = n.inputs.iter().map(|i| view(g, *i, addr(*i))).collect();
            let out = view(g, id, addr(id));
            let paired_second = self.pairs.values().any(|s| *s == id) && !unpaired.contains(&id.0);
            if self.fused_members.contains(&id.0) || paired_second || self.late_firsts.contains(&id.0) {
                out_calls.push(Vec::new());
                continue;
            }
            if let Some(&first) = self.late.get(&id.0) {
                // The first node's value is read by this one only; without a fused plan both run
                // here, in order (the span kept the first's inputs and value live until now).
                let f = g.node(first);
                let f_ins: Vec<View> = f.inputs.iter().map(|i| view(g, *i, addr(*i))).collect();
                let mid = view(g, first, addr(first));
                let extra: Vec<View> =
                    n.inputs.iter().filter(|e| **e != first).map(|e| view(g, *e, addr(*e))).collect();
                let (fv, mv) = dev_views(&f_ins, &mid);
                let (ev, ov) = dev_views(&extra, &out);
                let planned = match ops::plan_chain(&f.op, &n.op, &fv, &ev, &mv, &ov, scratch) {
                    Ok((calls, _)) => Ok(calls),
                    Err(CudaError::Unsupported { .. }) => {
                        let (iv, ov) = dev_views(&ins, &out);
                        ops::plan(&f.op, &fv, &mv, scratch)
                            .and_then(|c| ops::plan(&n.op, &iv, &ov, scratch).map(|d| [c, d].concat()))
                    }
                    Err(e) => Err(e),
                };
                match planned {
                    Ok(calls) => out_calls.push(calls),
                    Err(CudaError::Unsupported { op, why }) => {
                        unsupported.push(format!("node #{} '{}' ({op}): {why}", id.0, n.name))
                    }
                    Err(e) => return Err(cuda(e)),
                }
                continue;
            }
            if let Some((fg, entry, externals)) = self.fused.get(&id.0) {
                let ext: Vec<View> = externals.iter().map(|e| view(g, *e, addr(*e))).collect();
                let (ev, ov) = dev_views(&ext, &out);
                out_calls.push(vec![fg.plan(entry, &ev, &ov).map_err(cuda)?]);
                continue;
            }
            if let Some(&second) = self.pairs.get(&id.0) {
                let sn = g.node(second);
                // The second node's other inputs, in order.
                let extra: Vec<View> =
                    sn.inputs.iter().filter(|e| **e != id).map(|e| view(g, *e, addr(*e))).collect();
                let second_out = view(g, second, addr(second));
                let (iv, mv) = dev_views(&ins, &out);
                let (ev, sv) = dev_views(&extra, &second_out);
                match ops::plan_chain(&n.op, &sn.op, &iv, &ev, &mv, &sv, scratch) {
                    Ok((calls, _)) => {
                        out_calls.push(calls);
                        continue;
                    }
                    Err(CudaError::Unsupported { .. }) => {
                        unpaired.insert(second.0);
                    }
                    Err(e) => return Err(cuda(e)),
                }
            }
            let (iv, ov) = dev_views(&ins, &out);
            match ops::plan(&n.op, &iv, &ov, scratch) {
                Ok(calls) => out_calls.push(calls),
                Err(CudaError::Unsupported { op, why }) => {
                    unsupported.push(format!("node #{} '{}' ({op}): {why}", id.0, n.name))
                }
                Err(e) => return Err(cuda(e)),
            }
        }
        if !unsupported.is_empty() {
            let total = unsupported.len();
            unsupported.truncate(20);
            return Err(EngineError::NoCudaKernel { count: total, nodes: unsupported.join("\n  ") });
        }
        Ok(out_calls)
    }
}

fn view(g: &Graph, id: NodeId, ptr: u64) -> View {
    let n = g.node(id);
    (n.dtype, n.shape.dims().to_vec(), ptr)
}

fn cuda(e: CudaError) -> EngineError {
    EngineError::Cuda(e)
}

fn align(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

impl CudaBackend {
    /// `consts[i]` holds the bytes of every node that lives in the constant slab.
    pub fn new(
        dev: Arc<GpuDevice>,
        g: &Graph,
        (arena, arena_offsets): (Arc<CudaSlice<u8>>, &[Option<usize>]),
        (source, consts): (usize, &[ConstData]),
        states: &[NodeId],
        (steps, fusions): (&[NodeId], &Fusions),
    ) -> Result<Self> {
        let outputs: Vec<NodeId> = g.outputs.iter().map(|(_, id)| *id).collect();
        let mut locs: Vec<Option<DevLoc>> = arena_offsets.iter().map(|o| o.map(DevLoc::Arena)).collect();
        let mut shared = HashMap::new();
        let mut at = 0;
        for (id, bytes, name) in consts {
            match name {
                Some(name) => {
                    let key = WeightKey {
                        ordinal: dev.ctx.ordinal(),
                        source,
                        name: name.to_string(),
                        dtype: g.node(*id).dtype,
                    };
                    shared.insert(id.0, shared_weight(&dev, key, bytes)?);
                    locs[id.0] = Some(DevLoc::Shared);
                }
                None => {
                    locs[id.0] = Some(DevLoc::Const(at));
                    at += align(bytes.len());
                }
            }
        }
        let const_bytes = at + shared.values().map(|s| s.len()).sum::<usize>();
        let slab = dev.alloc(at).map_err(cuda)?;
        let base = dev.ptr(&slab);
        for (id, bytes, _) in consts {
            if let Some(DevLoc::Const(off)) = locs[id.0] {
                // SAFETY: `off..off+len` lies inside the slab just allocated.
                unsafe { dev.upload_staged(base + off as u64, bytes) }.map_err(cuda)?;
            }
        }
        let mut state_bufs = HashMap::new();
        for id in states {
            locs[id.0] = Some(DevLoc::State);
            state_bufs.insert(id.0, dev.zeros(g.node(*id).bytes()).map_err(cuda)?);
        }
        let mirrors = outputs.iter().map(|id| (*id, 0, AlignedBuf::zeroed(g.node(*id).bytes()))).collect();
        let schedule = CudaSchedule::new(g, fusions);
        for (entry, src) in schedule.generated() {
            dev.add_generated(entry, src).map_err(cuda)?;
        }
        let mut b = CudaBackend {
            schedule,
            scratch: dev.zeros(ALIGN).map_err(cuda)?,
            dev,
            arena,
            consts: slab,
            shared,
            states: state_bufs,
            locs,
            steps: Vec::new(),
            graph: None,
            copied: vec![true; outputs.len()],
            mirrors,
            flag_addr: 0,
            flag: AlignedBuf::zeroed(4),
            const_bytes,
        };
        b.plan_steps(g, steps)?;
        Ok(b)
    }

    fn addr(&self, g: &Graph, id: NodeId) -> u64 {
        let root = g.storage_root(id).0;
        let at = g.storage_offset(id) as u64;
        match self.locs[root] {
            Some(DevLoc::Arena(off)) => self.dev.ptr(&self.arena) + off as u64 + at,
            Some(DevLoc::Const(off)) => self.dev.ptr(&self.consts) + off as u64 + at,
            Some(DevLoc::Shared) => self.dev.ptr(&self.shared[&root]) + at,
            Some(DevLoc::State) => self.dev.ptr(&self.states[&root]) + at,
            None => 0,
        }
    }

    /// Plan and prepare every step against the current buffers (again after a state moves).
    pub fn plan_steps(&mut self, g: &Graph, steps: &[NodeId]) -> Result<()> {
        self.graph = None;
        let need = self.schedule.scratch_bytes(g, steps, &|id| self.addr(g, id));
        if need + ALIGN > self.scratch.len() {
            self.scratch = self.dev.zeros(need + ALIGN).map_err(cuda)?;
        }
        let sbase = self.dev.ptr(&self.scratch);
        let scratch = Scratch { ptr: sbase + ALIGN as u64, bytes: need, flag: sbase };
        self.flag_addr = sbase;
        for k in 0..self.mirrors.len() {
            self.mirrors[k].1 = self.addr(g, self.mirrors[k].0);
        }
        let calls = self.schedule.calls(g, steps, &|id| self.addr(g, id), scratch)?;
        let mut prepared =
            vec![self.dev.prepare(&[Call::Memset { ptr: sbase, bytes: 4, value: 0 }]).map_err(cuda)?];
        for c in &calls {
            prepared.push(self.dev.prepare(c).map_err(cuda)?);
        }
        self.steps = prepared;
        Ok(())
    }

    /// Run in `arena` from now on (a shared arena that grew): the launches hold its address, so
    /// they are planned again, and a captured graph is captured again.
    pub fn use_arena(&mut self, g: &Graph, steps: &[NodeId], arena: Arc<CudaSlice<u8>>) -> Result<()> {
        if Arc::ptr_eq(&arena, &self.arena) {
            return Ok(());
        }
        let captured = self.graph.is_some();
        self.arena = arena;
        self.plan_steps(g, steps)?;
        if captured {
            self.capture()?;
        }
        Ok(())
    }

    /// Write an input's bytes into its slot (in the arena, or its own buffer).
    pub fn set_input(&self, g: &Graph, id: NodeId, data: &[u8]) -> Result<()> {
        let dst = self.addr(g, id);
        // SAFETY: the input's planned range in the arena; the stream is synchronised before
        // `data` is released.
        unsafe { self.dev.write(dst, data) }.map_err(cuda)?;
        self.dev.sync().map_err(cuda)
    }

    /// Enqueue the run: the CUDA graph if one was captured, else the prepared launches; then
    /// the copies of the outputs and of the error flag to their host mirrors.
    pub fn execute(
        &mut self,
        g: &Graph,
        profile: Option<&mut Vec<NodeProfile>>,
        steps: &[NodeId],
    ) -> Result<()> {
        match (&self.graph, profile) {
            (Some(graph), None) => graph.launch().map_err(|e| cuda(CudaError::Driver(e.to_string())))?,
            (_, None) => {
                for p in &self.steps {
                    self.dev.launch(p).map_err(cuda)?;
                }
            }
            (_, Some(out)) => self.execute_timed(g, out, steps)?,
        }
        self.fetch_outputs()
    }

    fn fetch_outputs(&mut self) -> Result<()> {
        self.dev.bind().map_err(cuda)?;
        let stream = self.dev.stream.cu_stream();
        let copy = |dst: &mut [u8], src: u64| {
            // SAFETY: the mirror is owned by the plan and not read before `wait` syncs; `src` is
            // the output's (or the flag's) device range.
            unsafe { cudarc::driver::result::memcpy_dtoh_async(dst, src, stream) }
                .map_err(|e| cuda(CudaError::Driver(e.to_string())))
        };
        for ((_, src, buf), _) in self.mirrors.iter_mut().zip(&self.copied).filter(|(_, c)| **c) {
            copy(buf.as_mut_slice(), *src)?;
        }
        copy(self.flag.as_mut_slice(), self.flag_addr)
    }

    fn execute_timed(&mut self, g: &Graph, out: &mut Vec<NodeProfile>, steps: &[NodeId]) -> Result<()> {
        let ctx = &self.dev.ctx;
        let ev = || ctx.new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT));
        let drv = |e: cudarc::driver::DriverError| cuda(CudaError::Driver(e.to_string()));
        let t0 = ev().map_err(drv)?;
        t0.record(&self.dev.stream).map_err(drv)?;
        self.dev.launch(&self.steps[0]).map_err(cuda)?;
        let mut marks = Vec::with_capacity(steps.len());
        for p in &self.steps[1..] {
            let (a, b) = (ev().map_err(drv)?, ev().map_err(drv)?);
            a.record(&self.dev.stream).map_err(drv)?;
            self.dev.launch(p).map_err(cuda)?;
            b.record(&self.dev.stream).map_err(drv)?;
            marks.push((a, b));
        }
        self.dev.sync().map_err(cuda)?;
        for (&id, (a, b)) in steps.iter().zip(&marks) {
            let n = g.node(id);
            let c = g.node_cost(id);
            out.push(NodeProfile {
                node: id.0,
                name: n.name.clone(),
                kind: n.op.kind(),
                start_us: t0.elapsed_ms(a).map_err(drv)? as f64 * 1e3,
                dur_us: a.elapsed_ms(b).map_err(drv)? as f64 * 1e3,
                flops: c.flops,
                bytes: c.bytes,
            });
        }
        Ok(())
    }

    /// Capture the prepared launches once as a CUDA graph; later runs replay it.
    pub fn capture(&mut self) -> Result<()> {
        let drv = |e: cudarc::driver::DriverError| cuda(CudaError::Driver(e.to_string()));
        let s = &self.dev.stream;
        s.begin_capture(cudarc::driver::sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .map_err(drv)?;
        let launched: Result<()> = self.steps.iter().try_for_each(|p| self.dev.launch(p).map_err(cuda));
        let graph = s.end_capture(cudarc::driver::sys::CUgraphInstantiate_flags(0)).map_err(drv)?;
        launched?;
        let graph =
            graph.ok_or_else(|| cuda(CudaError::Driver("stream capture produced no graph".into())))?;
        graph.upload().map_err(drv)?;
        self.graph = Some(graph);
        Ok(())
    }

    pub fn has_graph(&self) -> bool {
        self.graph.is_some()
    }

    /// Wait for the enqueued run and check the kernels' index-error flag.
    pub fn wait(&self) -> Result<()> {
        self.dev.sync().map_err(cuda)?;
        if self.flag.as_slice() != [0, 0, 0, 0] {
            return Err(EngineError::Cuda(CudaError::Driver(
                "a gather or state write on the GPU met an out-of-range index; outputs are invalid".into(),
            )));
        }
        Ok(())
    }

    /// An output's host mirror (after `wait`); None where it is not copied back.
    pub fn output(&self, id: NodeId) -> Option<&[u8]> {
        let k = self.mirrors.iter().position(|(n, _, _)| *n == id)?;
        self.copied[k].then(|| self.mirrors[k].2.as_slice())
    }

    /// Copy back after each run only the outputs `keep` selects.
    pub fn copy_outputs(&mut self, keep: impl Fn(NodeId) -> bool) {
        for (k, (id, _, _)) in self.mirrors.iter().enumerate() {
            self.copied[k] = keep(*id);
        }
    }

    /// Copy `other`'s state `other_root` into this plan's `root` on the device, ordered on the
    /// stream after both plans' enqueued runs (same device; sizes checked by the caller).
    pub fn copy_state_from(&self, root: NodeId, other: &CudaBackend, other_root: NodeId) -> Result<()> {
        if !Arc::ptr_eq(&self.dev, &other.dev) {
            return Err(EngineError::Cuda(CudaError::Driver("cannot copy state between devices".into())));
        }
        let (dst, src) = (&self.states[&root.0], &other.states[&other_root.0]);
        self.dev.bind().map_err(cuda)?;
        // SAFETY: both are live state buffers of this device, of the size copied.
        unsafe {
            cudarc::driver::result::memcpy_dtod_async(
                self.dev.ptr(dst),
                other.dev.ptr(src),
                dst.len().min(src.len()),
                self.dev.stream.cu_stream(),
            )
        }
        .map_err(|e| cuda(CudaError::Driver(e.to_string())))
    }

    /// Copy a state buffer to `dst`.
    pub fn read_state(&self, root: NodeId, dst: &mut [u8]) -> Result<()> {
        let src = self.dev.ptr(&self.states[&root.0]);
        // SAFETY: `dst` has the state's size (the caller's host mirror).
        unsafe { self.dev.read(src, dst) }.map_err(cuda)
    }

    pub fn write_state(&self, root: NodeId, src: &[u8]) -> Result<()> {
        let dst = self.dev.ptr(&self.states[&root.0]);
        // SAFETY: `src` has the state's size; synchronised before returning.
        unsafe { self.dev.write(dst, src) }.map_err(cuda)?;
        self.dev.sync().map_err(cuda)
    }

    /// Exchange a state buffer with another plan's (zero-copy); both must re-plan their steps.
    pub fn swap_state(&mut self, root: NodeId, other: &mut CudaBackend, other_root: NodeId) -> Result<()> {
        if !Arc::ptr_eq(&self.dev, &other.dev) {
            return Err(EngineError::Cuda(CudaError::Driver("cannot swap state between devices".into())));
        }
        let a = self.states.get_mut(&root.0).expect("state node");
        let b = other.states.get_mut(&other_root.0).expect("state node");
        std::mem::swap(a, b);
        Ok(())
    }
}

type View = (focus_graph::DType, Vec<usize>, u64);

fn dev_views<'a>(ins: &'a [View], out: &'a View) -> (Vec<DevTensor<'a>>, DevTensor<'a>) {
    let d = |v: &'a View| DevTensor { dtype: v.0, shape: &v.1, ptr: v.2 };
    (ins.iter().map(d).collect(), d(out))
}
