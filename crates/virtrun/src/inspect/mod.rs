//! What the inputs are: the binary (ELF: architecture, interpreter, shared
//! libraries) and the kernel (image, release, configuration, module tree,
//! the PVH `vmlinux` inside an x86 bzImage), with the decompressors they
//! need.

pub mod decompress;
pub mod discover;
pub mod elf;
pub mod gobuild;
pub mod kernel;
pub mod libs;
pub mod registry;
pub mod source;
pub mod vmlinux;
