//! What goes where in the guest: the initramfs plan (pure), the newc
//! archive written from it, and go test's file flags pointed into the guest.

pub mod cpio;
pub mod gotest;
pub mod initramfs;
