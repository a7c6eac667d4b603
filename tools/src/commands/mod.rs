pub mod bench;
pub mod demo;
pub mod gpu_check;
pub mod graph;
pub mod inspect;
pub mod kernels;
pub mod ops;
pub mod parity;
