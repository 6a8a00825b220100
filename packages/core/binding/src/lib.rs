//! Binding of `@mistralrs/core`: thin adapters over `mistralrs-core`; no logic here.

mod grammar;
mod model;
mod runtime;
mod tokenizer;
