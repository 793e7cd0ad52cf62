//! elf (in progress)
