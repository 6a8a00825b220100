//! Binding of `@mistralrs/core`: thin adapters over `mistralrs-core`; no logic here.

mod embedding;
mod file_lock;
mod grammar;
mod model;
mod runtime;
mod slot;
mod tokenizer;
