//! What goes where in the guest: the initramfs plan (pure), the newc
//! archive written from it, go test's file flags pointed into the guest, and
//! which of the host's files the guest gets.

pub mod cpio;
pub mod gotest;
pub mod initramfs;
pub mod modules_image;
pub mod share;
