//! libs (in progress)
