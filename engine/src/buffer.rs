//! Host memory with the arena's alignment.

use focus_graph::passes::ARENA_ALIGN;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block([u8; ARENA_ALIGN]);

/// A zero-initialised byte buffer whose start is 64-byte aligned.
#[derive(Clone)]
pub struct AlignedBuf {
    blocks: Vec<Block>,
    len: usize,
}

impl AlignedBuf {
    pub fn zeroed(len: usize) -> Self {
        AlignedBuf { blocks: vec![Block([0; ARENA_ALIGN]); len.div_ceil(ARENA_ALIGN)], len }
    }

    pub fn from_bytes(b: &[u8]) -> Self {
        let mut s = Self::zeroed(b.len());
        s.as_mut_slice().copy_from_slice(b);
        s
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `blocks` owns at least `len` initialised bytes; Block is plain bytes.
        unsafe { std::slice::from_raw_parts(self.blocks.as_ptr() as *const u8, self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.blocks.as_mut_ptr() as *mut u8, self.len) }
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        self.blocks.as_mut_ptr() as *mut u8
    }
}

impl Default for AlignedBuf {
    fn default() -> Self {
        AlignedBuf::zeroed(0)
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.len)
    }
}
