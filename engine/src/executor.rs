//! compile(graph, weights, device) → Plan; Plan::execute runs it. Every intermediate lives at
//! a planner-assigned offset in one arena, allocated at compile time (the plan's own, or one
//! shared with other plans: `compile_shared`); weights stay where the
//! source holds them (zero-copy) unless they need a dtype or alignment fix; constant subgraphs
//! (weight layout conversions) are computed once here, at compile time.

use crate::arena::SharedArena;
use crate::buffer::AlignedBuf;
use crate::cuda::{ConstData, CudaBackend, CudaSchedule, Fusions};
use crate::device::Device;
use crate::error::{EngineError, Result};
use crate::profiler::{NodeProfile, Profile};
use crate::source::WeightSource;
use crate::tensor::Tensor;
use cudarc::driver::CudaSlice;
use focus_graph::passes::{
    eliminate_dead_code, fusion_groups, plan_memory, plan_memory_spans, static_nodes, FusionGroup, MemoryPlan,
};
use focus_graph::{Graph, NodeId, Op, Shape};
use focus_kernels::cuda::device::GpuDevice;
use focus_kernels::{cpu, TensorMut, TensorRef};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// Where a node's bytes live.
enum Storage {
    /// Offset into the plan's arena.
    Arena(usize),
    /// Computed or converted at compile time and kept.
    Resident(AlignedBuf),
    /// Borrowed from the weight source by name (zero-copy).
    Weight(String),
    /// A persistent buffer, kept across runs.
    State(AlignedBuf),
    /// An input or output of a plan in a shared arena: a buffer of the plan's own.
    Own(AlignedBuf),
    /// Shares the storage of its root (see `Graph::storage_root`).
    Alias,
}

/// Summary numbers of a compiled plan.
#[derive(Clone, Debug)]
pub struct PlanStats {
    pub nodes: usize,
    pub steps: usize,
    pub arena_bytes: usize,
    pub naive_bytes: usize,
    /// Weights used in place from the source.
    pub mapped_weight_bytes: usize,
    /// Converted weights and precomputed constant subgraphs.
    pub resident_bytes: usize,
    pub flops: u64,
    pub fusion_groups: usize,
    /// Tensors in the weight source that the graph does not use (e.g. a classifier head).
    pub unused_weights: usize,
    /// Persistent buffers (KV caches, latents).
    pub state_bytes: usize,
    /// CUDA plans: bytes of weights and constants uploaded to the device.
    pub device_const_bytes: usize,
    /// A plan in a shared arena: its own input and output buffers.
    pub own_bytes: usize,
}

pub struct Plan {
    graph: Graph,
    device: Device,
    memory: MemoryPlan,
    storage: Vec<Storage>,
    /// The plan's own arena, empty when it runs in `shared`.
    arena: AlignedBuf,
    shared: Option<SharedArena>,
    steps: Vec<NodeId>,
    weights: Option<Arc<dyn WeightSource>>,
    fusion: Vec<FusionGroup>,
    inputs: HashMap<String, NodeId>,
    input_set: Vec<bool>,
    unused_weights: Vec<String>,
    /// Each node's storage root and byte offset in it (aliases resolved once, at compile time,
    /// not on every run).
    roots: Vec<(usize, usize)>,
    /// Addresses of the state and own buffers per node (0 elsewhere), refreshed whenever a
    /// buffer moves (compile, `swap_state`), so `execute` needs no allocation to reach them.
    state_addrs: Vec<usize>,
    /// The device side of a CUDA plan (the host-side storage then holds only weights, folded
    /// constants and host mirrors of the states).
    cuda: Option<CudaBackend>,
}

/// One open device per ordinal, shared by every plan (so plans can exchange state buffers).
fn gpu(ordinal: usize) -> Result<Arc<GpuDevice>> {
    static DEVICES: OnceLock<Mutex<HashMap<usize, Arc<GpuDevice>>>> = OnceLock::new();
    let mut m = DEVICES
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .map_err(|_| EngineError::DeviceMismatch("a device registry poisoned by a panic"))?;
    if let Some(d) = m.get(&ordinal) {
        return Ok(d.clone());
    }
    let d = Arc::new(
        GpuDevice::open(ordinal)
            .map_err(|e| EngineError::DeviceUnavailable(format!("cuda:{ordinal}"), e.to_string()))?,
    );
    m.insert(ordinal, d.clone());
    Ok(d)
}

fn check_params(g: &Graph, src: Option<&dyn WeightSource>) -> Result<()> {
    let mut problems = Vec::new();
    for (name, id) in g.params() {
        let want = g.node(id);
        match src.and_then(|s| s.tensor(name)) {
            None => problems.push(format!("missing tensor '{name}' ({}{})", want.dtype, want.shape)),
            Some((_, shape, _)) if shape != want.shape.dims() => problems.push(format!(
                "tensor '{name}': graph expects shape {}, checkpoint has {}",
                want.shape,
                Shape::from(shape)
            )),
            Some((dt, shape, bytes_)) if bytes_.len() != Shape::from(shape).numel() * dt.size_in_bytes() => {
                problems.push(format!(
                    "tensor '{name}': {} bytes for {dt}{}",
                    bytes_.len(),
                    Shape::from(shape)
                ))
            }
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(EngineError::Weights(format!(
            "{} problem(s) loading weights:\n  {}",
            problems.len(),
            problems.join("\n  ")
        )))
    }
}

/// The nodes a plan runs, in order: everything not folded at compile time, not a leaf and not
/// a pure alias (in-place writes run).
pub fn steps(g: &Graph, is_static: &[bool]) -> Vec<NodeId> {
    g.ids()
        .filter(|id| {
            let op = &g.node(*id).op;
            let in_place = matches!(op, Op::WriteSlice { .. });
            !is_static[id.0] && !op.is_leaf() && (!g.is_alias(*id) || in_place)
        })
        .collect()
}

/// What compiling decides before any device is touched.
struct Front {
    g: Graph,
    steps: Vec<NodeId>,
    /// CUDA plans: the fused spans.
    fusions: Option<Fusions>,
    memory: MemoryPlan,
    storage: Vec<Storage>,
}

/// Compile `graph` for `device`, binding its parameters to `weights`.
pub fn compile(graph: &Graph, weights: Option<Arc<dyn WeightSource>>, device: Device) -> Result<Plan> {
    compile_in(graph, weights, device, None)
}

/// As [`compile`], with the activations in `arena`, which plans that run one after another
/// share (see [`SharedArena`]).
pub fn compile_shared(
    graph: &Graph,
    weights: Option<Arc<dyn WeightSource>>,
    device: Device,
    arena: &SharedArena,
) -> Result<Plan> {
    compile_in(graph, weights, device, Some(arena))
}

pub(crate) fn compile_in(
    graph: &Graph,
    weights: Option<Arc<dyn WeightSource>>,
    device: Device,
    shared: Option<&SharedArena>,
) -> Result<Plan> {
    let Front { g, steps, fusions, memory, storage } =
        front(graph, weights.as_ref(), matches!(device, Device::Cuda(_)), shared.is_some())?;
    let inputs: HashMap<String, NodeId> = g.inputs().into_iter().map(|(n, id)| (n.to_string(), id)).collect();
    let fusion = fusion_groups(&g);
    let used: std::collections::HashSet<&str> = g.params().into_iter().map(|(n, _)| n).collect();
    let mut unused_weights: Vec<String> = weights
        .as_deref()
        .map(|w| w.names().into_iter().filter(|n| !used.contains(n.as_str())).collect())
        .unwrap_or_default();
    unused_weights.sort();
    let cuda = match device {
        Device::Cpu => None,
        Device::Cuda(ordinal) => {
            let fusions = fusions.as_ref().expect("planned for CUDA");
            let dev = gpu(ordinal)?;
            let arena = shared.map(|a| a.reserve_device(&dev, memory.arena_bytes)).transpose()?;
            Some(cuda_backend(dev, &g, (&storage, &memory, arena), weights.as_ref(), &steps, fusions)?)
        }
    };
    if let (None, Some(a)) = (&cuda, shared) {
        a.reserve_host(memory.arena_bytes)?;
    }
    let roots = g.ids().map(|id| (g.storage_root(id).0, g.storage_offset(id))).collect();
    let mut plan = Plan {
        roots,
        state_addrs: Vec::new(),
        unused_weights,
        // A CUDA plan's intermediates live in its device arena, a sharing plan's in `shared`.
        arena: AlignedBuf::zeroed(if cuda.is_some() || shared.is_some() { 0 } else { memory.arena_bytes }),
        shared: shared.cloned(),
        cuda,
        input_set: vec![false; g.len()],
        graph: g,
        device,
        memory,
        storage,
        steps,
        weights,
        fusion,
        inputs,
    };
    plan.refresh_state_addrs();
    Ok(plan)
}

/// A CUDA plan as far as it goes without a device: its graph, steps and their schedule, the
/// arena layout, and the bytes of everything uploaded. The emulator (tools/cuda-emu) runs it
/// to check whole model graphs on the CUDA path against the CPU.
pub struct CudaOffline {
    pub graph: Graph,
    pub steps: Vec<NodeId>,
    pub schedule: CudaSchedule,
    pub arena_bytes: usize,
    /// Arena offset of each storage root in the arena, None elsewhere (aliases resolve
    /// through `Graph::storage_root`).
    pub arena_offsets: Vec<Option<usize>>,
    /// Weights and folded constants the steps read, by node.
    pub consts: Vec<(NodeId, Vec<u8>)>,
    /// Nodes with device buffers of their own (zeroed): states, and with `own_io` the inputs
    /// and outputs.
    pub states: Vec<NodeId>,
}

/// `own_io`: plan as for a shared arena (inputs and outputs in buffers of their own).
pub fn cuda_offline(
    graph: &Graph,
    weights: Option<Arc<dyn WeightSource>>,
    own_io: bool,
) -> Result<CudaOffline> {
    let Front { g, steps, fusions, memory, storage } = front(graph, weights.as_ref(), true, own_io)?;
    let schedule = CudaSchedule::new(&g, fusions.as_ref().expect("planned for CUDA"));
    let (consts, states) = device_consts(&g, &storage, weights.as_deref(), &steps);
    let consts = consts.into_iter().map(|(id, bytes, _)| (id, bytes.to_vec())).collect();
    let arena_offsets = arena_offsets(&g, &storage);
    Ok(CudaOffline {
        arena_bytes: memory.arena_bytes,
        graph: g,
        steps,
        schedule,
        arena_offsets,
        consts,
        states,
    })
}

/// What a CUDA plan of `graph` launches per run (kernels, GEMMs, memsets and copies), planned
/// as the device would plan it but without a device or weights: each step that launches
/// anything, with its launch count. Arena addresses are the planner's; weights, constants and
/// states get distinct 256-byte-aligned addresses, as the device allocator gives them.
pub fn cuda_launches(graph: &Graph) -> Result<Vec<(NodeId, usize)>> {
    let Layout { g, steps, fusions, memory, .. } = layout(graph, true, false);
    let schedule = CudaSchedule::new(&g, fusions.as_ref().expect("planned for CUDA"));
    const ARENA: u64 = 1 << 40;
    const OTHER: u64 = 1 << 44;
    let mut other = vec![0u64; g.len()];
    let mut at = OTHER;
    for id in g.ids().filter(|id| memory.offsets[id.0].is_none() && !g.is_alias(*id)) {
        other[id.0] = at;
        at += (g.node(id).bytes() as u64).next_multiple_of(256).max(256);
    }
    let addr = |id: NodeId| match memory.offsets[id.0] {
        Some(off) => ARENA + off as u64,
        None => other[g.storage_root(id).0] + g.storage_offset(id) as u64,
    };
    let need = schedule.scratch_bytes(&g, &steps, &addr);
    let scratch = focus_kernels::cuda::launch::Scratch { ptr: at + 256, bytes: need, flag: at };
    let calls = schedule.calls(&g, &steps, &addr, scratch)?;
    Ok(steps.iter().zip(calls).filter(|(_, c)| !c.is_empty()).map(|(id, c)| (*id, c.len())).collect())
}

fn arena_offsets(g: &Graph, storage: &[Storage]) -> Vec<Option<usize>> {
    g.ids().map(|id| if let Storage::Arena(off) = storage[id.0] { Some(off) } else { None }).collect()
}

/// `own_io`: inputs and outputs get buffers of their own instead of arena slots (a plan in a
/// shared arena).
/// What planning decides from the graph alone: the graph after dead-code elimination, its
/// folded nodes, the steps, the fused spans (CUDA) and the memory plan; `own` marks the nodes
/// with buffers of their own (`own_io`: a plan in a shared arena keeps its inputs and outputs
/// out of the arena).
struct Layout {
    g: Graph,
    is_static: Vec<bool>,
    steps: Vec<NodeId>,
    fusions: Option<Fusions>,
    memory: MemoryPlan,
    own: Vec<bool>,
}

fn layout(graph: &Graph, cuda: bool, own_io: bool) -> Layout {
    let (g, _) = eliminate_dead_code(graph);
    let is_static = static_nodes(&g);
    let steps = steps(&g, &is_static);
    // A CUDA plan runs fused spans as one launch sequence; their values stay live across them.
    let fusions = cuda.then(|| Fusions::of(&g, &steps));
    let mut own = vec![false; g.len()];
    if own_io {
        for id in g.ids() {
            own[id.0] = matches!(g.node(id).op, Op::Input { .. });
        }
        for (_, o) in &g.outputs {
            let r = g.storage_root(*o);
            own[r.0] |= !is_static[r.0] && !g.node(r).op.is_leaf();
        }
    }
    // Outside the arena: folded constants and the nodes with buffers of their own.
    let outside: Vec<bool> = is_static.iter().zip(&own).map(|(s, o)| *s || *o).collect();
    let memory = match &fusions {
        Some(f) => plan_memory_spans(&g, &outside, &f.spans()),
        None => plan_memory(&g, &outside),
    };
    Layout { g, is_static, steps, fusions, memory, own }
}

fn front(graph: &Graph, weights: Option<&Arc<dyn WeightSource>>, cuda: bool, own_io: bool) -> Result<Front> {
    let weights = weights.cloned();
    let Layout { g, is_static, steps, fusions, memory, own } = layout(graph, cuda, own_io);
    check_params(&g, weights.as_deref())?;
    // Start every rayon worker now: a worker's one-time setup (e.g. registering with
    // crossbeam-epoch on its first steal) allocates, and would otherwise land in some later
    // `execute`.
    rayon::broadcast(|_| ());
    let mut storage: Vec<Storage> = Vec::with_capacity(g.len());
    for id in g.ids() {
        let n = g.node(id);
        let s = match &n.op {
            Op::Param { name } => {
                let (dt, _, bytes) = weights.as_deref().and_then(|w| w.tensor(name)).expect("checked above");
                let aligned = (bytes.as_ptr() as usize).is_multiple_of(dt.size_in_bytes());
                if dt == n.dtype && aligned {
                    Storage::Weight(name.clone())
                } else {
                    // Convert once (dtype on load, or realign for typed access).
                    let src = TensorRef::new(dt, n.shape.dims(), bytes);
                    let mut buf = AlignedBuf::zeroed(n.bytes());
                    let mut out = TensorMut::new(n.dtype, n.shape.dims(), buf.as_mut_slice());
                    cpu::cast::cast(&src, &mut out).map_err(|e| EngineError::Kernel {
                        node: id.0,
                        name: name.clone(),
                        source: e,
                    })?;
                    Storage::Resident(buf)
                }
            }
            Op::Constant { data } => Storage::Resident(AlignedBuf::from_bytes(data)),
            Op::State { .. } => Storage::State(AlignedBuf::zeroed(n.bytes())),
            _ if g.is_alias(id) => Storage::Alias,
            _ if own[id.0] => Storage::Own(AlignedBuf::zeroed(n.bytes())),
            _ if is_static[id.0] => {
                let mut buf = AlignedBuf::zeroed(n.bytes());
                {
                    let ins: Vec<TensorRef> =
                        n.inputs.iter().map(|i| view_of(&g, &storage, &[], weights.as_deref(), *i)).collect();
                    let mut out = TensorMut::new(n.dtype, n.shape.dims(), buf.as_mut_slice());
                    cpu::run(&n.op, &ins, &mut out).map_err(|e| EngineError::Kernel {
                        node: id.0,
                        name: n.name.clone(),
                        source: e,
                    })?;
                }
                Storage::Resident(buf)
            }
            _ => Storage::Arena(memory.offsets[id.0].expect("non-static nodes are planned")),
        };
        storage.push(s);
    }
    Ok(Front { g, steps, fusions, memory, storage })
}

/// Upload what the steps read from the host side (weights, folded constants) and plan every
/// step on the device.
fn cuda_backend(
    dev: Arc<GpuDevice>,
    g: &Graph,
    (storage, memory, arena): (&[Storage], &MemoryPlan, Option<Arc<CudaSlice<u8>>>),
    weights: Option<&Arc<dyn WeightSource>>,
    steps: &[NodeId],
    fusions: &crate::cuda::Fusions,
) -> Result<CudaBackend> {
    // Weights are shared by every plan on the device that uses the same source (a prefill plan
    // per prompt shape and the decode plan hold one copy), keyed by the source's identity.
    let source_id = weights.map_or(0, |w| Arc::as_ptr(w) as *const () as usize);
    let (consts, states) = device_consts(g, storage, weights.map(|w| w.as_ref()), steps);
    let offsets = arena_offsets(g, storage);
    let arena = match arena {
        Some(a) => a,
        None => Arc::new(dev.alloc(memory.arena_bytes)?),
    };
    CudaBackend::new(dev, g, (arena, &offsets), (source_id, &consts), &states, (steps, fusions))
}

/// What a device plan uploads (weights and folded constants the steps or outputs read, with
/// the parameter name of weights) and the nodes with device buffers of their own (states, and
/// a sharing plan's inputs and outputs).
fn device_consts<'a>(
    g: &'a Graph,
    storage: &'a [Storage],
    weights: Option<&'a dyn WeightSource>,
    steps: &[NodeId],
) -> (Vec<ConstData<'a>>, Vec<NodeId>) {
    let mut needed = vec![false; g.len()];
    for &id in steps {
        for i in &g.node(id).inputs {
            needed[g.storage_root(*i).0] = true;
        }
    }
    for (_, id) in &g.outputs {
        needed[g.storage_root(*id).0] = true;
    }
    let mut consts = Vec::new();
    let mut states = Vec::new();
    for id in g.ids() {
        match &storage[id.0] {
            Storage::Weight(_) | Storage::Resident(_) if needed[id.0] => {
                let key = match &g.node(id).op {
                    Op::Param { name } => Some(name.as_str()),
                    _ => None,
                };
                consts.push((id, view_of(g, storage, &[], weights, id).data, key))
            }
            Storage::State(_) | Storage::Own(_) => states.push(id),
            _ => {}
        }
    }
    (consts, states)
}

/// `len` bytes of `data` from `at` (a view inside its root's storage); empty where the root has
/// no bytes (a weight source without the tensor, reported when the plan was compiled).
fn window(data: &[u8], at: usize, len: usize) -> &[u8] {
    data.get(at..at + len).unwrap_or(&[])
}

/// View of a node's bytes outside `execute` (compile time and output reads).
fn view_of<'a>(
    g: &'a Graph,
    storage: &'a [Storage],
    arena: &'a [u8],
    weights: Option<&'a dyn WeightSource>,
    id: NodeId,
) -> TensorRef<'a> {
    let n = g.node(id);
    let data: &[u8] = match &storage[g.storage_root(id).0] {
        Storage::Arena(off) => &arena[*off..],
        Storage::Resident(b) => b.as_slice(),
        Storage::Weight(name) => weights.and_then(|w| w.tensor(name)).map(|t| t.2).unwrap_or(&[]),
        Storage::State(b) | Storage::Own(b) => b.as_slice(),
        Storage::Alias => unreachable!("roots are never aliases"),
    };
    TensorRef::new(n.dtype, n.shape.dims(), window(data, g.storage_offset(id), n.bytes()))
}

impl Plan {
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn memory(&self) -> &MemoryPlan {
        &self.memory
    }

    /// Names of source tensors the graph does not use, sorted.
    pub fn unused_weights(&self) -> &[String] {
        &self.unused_weights
    }

    pub fn fusion_groups(&self) -> &[FusionGroup] {
        &self.fusion
    }

    pub fn stats(&self) -> PlanStats {
        let (mut mapped, mut resident, mut state, mut own) = (0, 0, 0, 0);
        for (i, s) in self.storage.iter().enumerate() {
            match s {
                Storage::Weight(_) => mapped += self.graph.nodes[i].bytes(),
                Storage::Resident(b) => resident += b.len(),
                Storage::State(b) => state += b.len(),
                Storage::Own(b) => own += b.len(),
                Storage::Arena(_) | Storage::Alias => {}
            }
        }
        PlanStats {
            nodes: self.graph.len(),
            steps: self.steps.len(),
            arena_bytes: self.memory.arena_bytes,
            naive_bytes: self.memory.naive_bytes,
            mapped_weight_bytes: mapped,
            resident_bytes: resident,
            flops: self.steps.iter().map(|id| self.graph.node_cost(*id).flops).sum(),
            fusion_groups: self.fusion.len(),
            unused_weights: self.unused_weights.len(),
            state_bytes: state,
            device_const_bytes: self.cuda.as_ref().map_or(0, |c| c.const_bytes),
            own_bytes: own,
        }
    }

    /// Validate a tensor written into node `id` (an input or a state); returns its byte size.
    fn check_tensor(&self, id: NodeId, name: &str, t: &TensorRef<'_>) -> Result<usize> {
        let n = self.graph.node(id);
        if n.dtype != t.dtype || n.shape.dims() != t.shape {
            return Err(EngineError::InputMismatch {
                name: name.into(),
                want_dtype: n.dtype,
                want_shape: n.shape.clone(),
                got_dtype: t.dtype,
                got_shape: Shape::from(t.shape),
            });
        }
        let want = n.bytes();
        if t.data.len() != want {
            return Err(EngineError::DataSize {
                dtype: t.dtype,
                shape: Shape::from(t.shape),
                got: t.data.len(),
                want,
            });
        }
        Ok(want)
    }

    /// Copy one input into its arena slot (validated against the graph's declaration).
    pub fn set_input(&mut self, name: &str, t: &TensorRef<'_>) -> Result<()> {
        let id = *self.inputs.get(name).ok_or_else(|| {
            let mut known: Vec<&str> = self.inputs.keys().map(|s| s.as_str()).collect();
            known.sort_unstable();
            EngineError::UnknownInput { name: name.into(), known: known.join(", ") }
        })?;
        let want = self.check_tensor(id, name, t)?;
        match (&self.cuda, &mut self.storage[id.0]) {
            (Some(c), _) => c.set_input(&self.graph, id, t.data)?,
            (None, Storage::Arena(off)) => {
                self.arena.as_mut_slice()[*off..*off + want].copy_from_slice(t.data)
            }
            (None, Storage::Own(b)) => b.as_mut_slice().copy_from_slice(t.data),
            _ => unreachable!("inputs live in the arena or a buffer of their own"),
        }
        self.input_set[id.0] = true;
        Ok(())
    }

    /// Run every step. Inputs must have been set; they stay set for later runs.
    pub fn execute(&mut self) -> Result<()> {
        self.execute_inner(None)
    }

    /// Run every step, timing each node.
    pub fn execute_profiled(&mut self) -> Result<Profile> {
        let mut p = Profile {
            device: self.device.to_string(),
            nodes: Vec::with_capacity(self.steps.len()),
            total_us: 0.0,
        };
        self.execute_inner(Some(&mut p))?;
        Ok(p)
    }

    fn execute_inner(&mut self, mut profile: Option<&mut Profile>) -> Result<()> {
        for (name, id) in &self.inputs {
            if !self.input_set[id.0] {
                return Err(EngineError::MissingInput(name.clone()));
            }
        }
        if let Some(c) = self.cuda.as_mut() {
            if let Some(Some(a)) = self.shared.as_ref().map(|s| s.device(c.dev.ctx.ordinal())).transpose()? {
                // A no-op unless a larger plan joined since the last run and the arena grew.
                c.use_arena(&self.graph, &self.steps, a)?;
            }
            let t0 = Instant::now();
            c.execute(&self.graph, profile.as_deref_mut().map(|p| &mut p.nodes), &self.steps)?;
            if let Some(p) = profile {
                c.wait()?;
                p.total_us = t0.elapsed().as_secs_f64() * 1e6;
            }
            return Ok(());
        }
        // A shared arena stays locked for the run: plans sharing it run one at a time.
        let mut lock = self.shared.as_ref().map(|a| a.lock()).transpose()?;
        let base = match lock.as_mut() {
            Some(a) => a.host.as_mut_ptr(),
            None => self.arena.as_mut_ptr(),
        };
        // State buffers are reached through their exposed addresses, for reads and in-place
        // writes alike, so no shared borrow of a state is alive while it is written.
        let states = |i: usize| std::ptr::with_exposed_provenance_mut::<u8>(self.state_addrs[i]);
        let t0 = Instant::now();
        for &id in &self.steps {
            let n = &self.graph.nodes[id.0];
            let in_place = matches!(n.op, Op::WriteSlice { .. });
            let view = |i: NodeId| -> TensorRef<'_> {
                let m = &self.graph.nodes[i.0];
                let (root, at) = self.roots[i.0];
                let data: &[u8] = match &self.storage[root] {
                    // SAFETY: the planner gives every value live at this step a disjoint range of
                    // the arena (a view lies inside its root's), so this shared view never
                    // overlaps the output written below.
                    Storage::Arena(off) => unsafe {
                        std::slice::from_raw_parts(base.add(off + at), m.bytes())
                    },
                    // SAFETY: a state is written only by WriteSlice steps, which never read it
                    // (their destination input is replaced by an empty view below); views of
                    // states are never made.
                    Storage::State(_) => unsafe { std::slice::from_raw_parts(states(root), m.bytes()) },
                    // SAFETY: an own buffer is an input (never written by a step) or an output
                    // root, written only by its own step, which never reads itself.
                    Storage::Own(_) => unsafe { std::slice::from_raw_parts(states(root).add(at), m.bytes()) },
                    Storage::Alias => unreachable!("roots are never aliases"),
                    Storage::Resident(b) => window(b.as_slice(), at, m.bytes()),
                    Storage::Weight(name) => window(
                        self.weights.as_deref().and_then(|w| w.tensor(name)).map(|t| t.2).unwrap_or(&[]),
                        at,
                        m.bytes(),
                    ),
                };
                TensorRef::new(m.dtype, m.shape.dims(), data)
            };
            // Inline room for every op's inputs (SpatialNorm and biased GatedLinear take five).
            let ins: SmallVec<[TensorRef; 6]> = n
                .inputs
                .iter()
                .enumerate()
                .map(|(k, i)| if in_place && k == 0 { TensorRef::new(n.dtype, &[0], &[]) } else { view(*i) })
                .collect();
            let root = self.roots[id.0].0;
            let out_bytes = match self.storage[root] {
                // SAFETY: `off..off+bytes` is this node's own arena range; no input aliases it
                // (inputs are live at this step, so their ranges are disjoint from it).
                Storage::Arena(off) => unsafe { std::slice::from_raw_parts_mut(base.add(off), n.bytes()) },
                // SAFETY: the in-place destination, or this output's own buffer; no view of it
                // exists during this step.
                Storage::State(_) | Storage::Own(_) => unsafe {
                    std::slice::from_raw_parts_mut(states(root), n.bytes())
                },
                _ => unreachable!("steps write to the arena, a state or their own buffer"),
            };
            let mut out = TensorMut::new(n.dtype, n.shape.dims(), out_bytes);
            let start = Instant::now();
            cpu::run(&n.op, &ins, &mut out).map_err(|e| EngineError::Kernel {
                node: id.0,
                name: n.name.clone(),
                source: e,
            })?;
            if let Some(p) = profile.as_deref_mut() {
                let c = self.graph.node_cost(id);
                p.nodes.push(NodeProfile {
                    node: id.0,
                    name: n.name.clone(),
                    kind: n.op.kind(),
                    start_us: (start - t0).as_secs_f64() * 1e6,
                    dur_us: start.elapsed().as_secs_f64() * 1e6,
                    flops: c.flops,
                    bytes: c.bytes,
                });
            }
        }
        if let Some(p) = profile {
            p.total_us = t0.elapsed().as_secs_f64() * 1e6;
        }
        Ok(())
    }

    fn refresh_state_addrs(&mut self) {
        self.state_addrs = self
            .storage
            .iter_mut()
            .map(|s| match s {
                Storage::State(b) | Storage::Own(b) => b.as_mut_ptr().expose_provenance(),
                _ => 0,
            })
            .collect();
    }

    fn state_node(&self, name: &str) -> Result<NodeId> {
        self.graph
            .states()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, id)| id)
            .ok_or_else(|| EngineError::UnknownState(name.into()))
    }

    /// Read a persistent buffer (a CUDA plan first copies it back from the device).
    pub fn state(&mut self, name: &str) -> Result<TensorRef<'_>> {
        let id = self.state_node(name)?;
        if let (Some(c), Storage::State(b)) = (&self.cuda, &mut self.storage[id.0]) {
            c.wait()?;
            c.read_state(id, b.as_mut_slice())?;
        }
        Ok(view_of(&self.graph, &self.storage, self.arena.as_slice(), self.weights.as_deref(), id))
    }

    /// Capture the plan as a CUDA graph so later runs replay it in one launch (the LLM decode
    /// step, the UNet step). Inputs keep their device slots, so `set_input` + `execute` work as
    /// before. Returns false on a CPU plan, where there is nothing to capture.
    pub fn capture_graph(&mut self) -> Result<bool> {
        match self.cuda.as_mut() {
            Some(c) => {
                c.capture()?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The GPU a CUDA plan runs on.
    pub fn gpu(&self) -> Option<&Arc<GpuDevice>> {
        self.cuda.as_ref().map(|c| &c.dev)
    }

    /// Wait until the last run has finished (CUDA runs are asynchronous; a no-op on CPU).
    pub fn wait(&self) -> Result<()> {
        self.cuda.as_ref().map_or(Ok(()), |c| c.wait())
    }

    /// Whether runs replay a captured CUDA graph.
    pub fn has_graph(&self) -> bool {
        self.cuda.as_ref().is_some_and(|c| c.has_graph())
    }

    /// Overwrite a persistent buffer (validated like an input).
    pub fn set_state(&mut self, name: &str, t: &TensorRef<'_>) -> Result<()> {
        let id = self.state_node(name)?;
        self.check_tensor(id, name, t)?;
        if let Some(c) = &self.cuda {
            return c.write_state(id, t.data);
        }
        let Storage::State(b) = &mut self.storage[id.0] else { unreachable!("state nodes hold state") };
        b.as_mut_slice().copy_from_slice(t.data);
        Ok(())
    }

    /// Copy `other`'s persistent buffer `name` into this plan's buffer of the same name, on the
    /// device for CUDA plans (no host round trip, no re-planning): how a stage hands a small
    /// tensor (latents, a mask, features) to the next. Both must declare it alike.
    pub fn copy_state_from(&mut self, other: &Plan, name: &str) -> Result<()> {
        let (a, b) = self.state_pair(other, name)?;
        match (&self.cuda, &other.cuda) {
            (Some(x), Some(y)) => x.copy_state_from(a, y, b),
            (None, None) => {
                let Storage::State(src) = &other.storage[b.0] else { unreachable!("state nodes hold state") };
                let Storage::State(dst) = &mut self.storage[a.0] else {
                    unreachable!("state nodes hold state")
                };
                dst.as_mut_slice().copy_from_slice(src.as_slice());
                Ok(())
            }
            _ => Err(EngineError::DeviceMismatch("copy_state_from")),
        }
    }

    /// The state `name` of this plan and of `other`, which must declare it alike.
    fn state_pair(&self, other: &Plan, name: &str) -> Result<(NodeId, NodeId)> {
        let (a, b) = (self.state_node(name)?, other.state_node(name)?);
        let (na, nb) = (self.graph.node(a), other.graph.node(b));
        if na.dtype != nb.dtype || na.shape != nb.shape {
            return Err(EngineError::InputMismatch {
                name: name.to_string(),
                want_dtype: na.dtype,
                want_shape: na.shape.clone(),
                got_dtype: nb.dtype,
                got_shape: nb.shape.clone(),
            });
        }
        Ok((a, b))
    }

    /// Swap a persistent buffer with the same-named one of `other` (zero-copy), e.g. to hand
    /// the KV cache from the prefill plan to the decode plan. Both must declare it alike.
    pub fn swap_state(&mut self, other: &mut Plan, name: &str) -> Result<()> {
        self.swap_states(other, &[name])
    }

    /// `swap_state` for several buffers at once. All are validated before any moves; a CUDA
    /// plan re-plans its launches (which hold buffer addresses) once, after the last swap, and
    /// drops its captured graph.
    pub fn swap_states(&mut self, other: &mut Plan, names: &[&str]) -> Result<()> {
        let pairs = names.iter().map(|name| self.state_pair(other, name)).collect::<Result<Vec<_>>>()?;
        match (self.cuda.as_mut(), other.cuda.as_mut()) {
            (None, None) => {
                for (a, b) in pairs {
                    std::mem::swap(&mut self.storage[a.0], &mut other.storage[b.0]);
                }
                self.refresh_state_addrs();
                other.refresh_state_addrs();
            }
            (Some(x), Some(y)) => {
                for (a, b) in pairs {
                    x.swap_state(a, y, b)?;
                }
                x.plan_steps(&self.graph, &self.steps)?;
                y.plan_steps(&other.graph, &other.steps)?;
            }
            _ => return Err(EngineError::DeviceMismatch("swap_state")),
        }
        Ok(())
    }

    /// Borrow an output after `execute`.
    pub fn output(&self, name: &str) -> Result<TensorRef<'_>> {
        let id = self.graph.output(name).ok_or_else(|| EngineError::UnknownOutput(name.into()))?;
        if let Some(c) = &self.cuda {
            c.wait()?;
            let n = self.graph.node(id);
            let data = c.output(id).ok_or_else(|| EngineError::OutputNotCopied(name.into()))?;
            return Ok(TensorRef::new(n.dtype, n.shape.dims(), data));
        }
        Ok(view_of(&self.graph, &self.storage, self.arena.as_slice(), self.weights.as_deref(), id))
    }

    /// Which outputs a device plan copies back to the host after each run: `None` all (the
    /// default), else only these (a decode step that picks its token on the device skips the
    /// logits). CPU plans read outputs in place, so this changes nothing there.
    pub fn copy_outputs(&mut self, names: Option<&[&str]>) -> Result<()> {
        let mut keep = Vec::new();
        for name in names.unwrap_or_default() {
            keep.push(self.graph.output(name).ok_or_else(|| EngineError::UnknownOutput(name.to_string()))?);
        }
        if let Some(c) = &mut self.cuda {
            c.copy_outputs(|id| names.is_none() || keep.contains(&id));
        }
        Ok(())
    }

    /// Set inputs, execute, and copy every output out (those `copy_outputs` selects).
    pub fn run(&mut self, inputs: &[(&str, &Tensor)]) -> Result<HashMap<String, Tensor>> {
        for (name, t) in inputs {
            self.set_input(name, &t.view())?;
        }
        self.execute()?;
        let mut out = HashMap::new();
        for (name, _) in self.graph.outputs.clone() {
            match self.output(&name) {
                Ok(v) => {
                    let t = Tensor::from_bytes(v.dtype, v.shape, v.data)?;
                    out.insert(name, t);
                }
                Err(EngineError::OutputNotCopied(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}
