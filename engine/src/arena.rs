//! One activation arena shared by plans that run one after another, such as a pipeline's stages
//! (ARCHITECTURE decision 3): sized by the largest plan, not the sum of them. A plan compiled
//! into a shared arena keeps its inputs and outputs in buffers of its own, so an input set once
//! holds across the other plans' runs and outputs stay readable; everything else in the arena
//! is scratch that each run rewrites.

use crate::buffer::AlignedBuf;
use crate::error::{EngineError, Result};
use cudarc::driver::CudaSlice;
use focus_kernels::cuda::device::GpuDevice;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// A handle to a shared arena; clones share it. CPU plans run under its lock (one at a time);
/// CUDA plans on one device are ordered by that device's stream.
#[derive(Clone, Default)]
pub struct SharedArena(Arc<Mutex<Inner>>);

#[derive(Default)]
pub(crate) struct Inner {
    pub(crate) host: AlignedBuf,
    /// Per device ordinal. Replaced, never resized in place, when a larger plan joins: a plan
    /// still holding the old buffer keeps it alive until its next run moves it over.
    device: HashMap<usize, Arc<CudaSlice<u8>>>,
}

impl SharedArena {
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, Inner>> {
        self.0.lock().map_err(|_| EngineError::DeviceMismatch("a shared arena poisoned by a panic"))
    }

    /// Bytes of the host arena (the largest CPU plan sharing it).
    pub fn host_bytes(&self) -> usize {
        self.lock().map_or(0, |a| a.host.len())
    }

    /// Bytes of the arena on CUDA device `ordinal` (the largest plan there).
    pub fn device_bytes(&self, ordinal: usize) -> usize {
        self.lock().ok().and_then(|a| a.device.get(&ordinal).map(|d| d.len())).unwrap_or(0)
    }

    /// Grow the host arena to at least `bytes` (at compile time, so runs never allocate).
    pub(crate) fn reserve_host(&self, bytes: usize) -> Result<()> {
        let mut a = self.lock()?;
        if a.host.len() < bytes {
            a.host = AlignedBuf::zeroed(bytes);
        }
        Ok(())
    }

    /// The device arena of `dev`, grown to at least `bytes` (a new buffer when it grows).
    pub(crate) fn reserve_device(&self, dev: &GpuDevice, bytes: usize) -> Result<Arc<CudaSlice<u8>>> {
        let mut a = self.lock()?;
        let ordinal = dev.ctx.ordinal();
        if let Some(d) = a.device.get(&ordinal).filter(|d| d.len() >= bytes) {
            return Ok(d.clone());
        }
        // Drop the map's reference first: an old buffer no plan holds is freed before the new
        // one is allocated.
        a.device.remove(&ordinal);
        let d = Arc::new(dev.alloc(bytes.max(1))?);
        a.device.insert(ordinal, d.clone());
        Ok(d)
    }

    /// The current device arena of `ordinal`.
    pub(crate) fn device(&self, ordinal: usize) -> Result<Option<Arc<CudaSlice<u8>>>> {
        Ok(self.lock()?.device.get(&ordinal).cloned())
    }
}
