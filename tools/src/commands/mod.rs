pub mod bench;
pub mod demo;
pub mod graph;
pub mod inspect;
pub mod kernels;
pub mod ops;
pub mod parity;
