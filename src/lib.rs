//! echoloop
pub mod loadgen;
