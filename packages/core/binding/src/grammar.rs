//! Grammars from JavaScript: a compiler per tokenizer (its vocabulary trie is built
//! off-thread, once), and compiled constraints handed to `ModelHandle.addSequence`.

use std::sync::Arc;

use mistralrs_core::grammar::{Constraint, GrammarCompiler, GrammarKind};
use mistralrs_core::Tokenizer;
use mistralrs_napi_support::guard;
use napi::bindgen_prelude::AsyncTask;
use napi::{Env, Task};
use napi_derive::napi;

use crate::model::model_error;
use crate::tokenizer::TokenizerHandle;

#[napi]
pub struct GrammarCompilerHandle {
    inner: Arc<GrammarCompiler>,
}

/// A compiled grammar, not yet started: each sequence that uses it reads from its own copy.
#[napi]
pub struct ConstraintHandle {
    pub(crate) inner: Constraint,
}

pub struct CreateCompilerTask {
    tokenizer: Arc<Tokenizer>,
}

#[napi]
impl Task for CreateCompilerTask {
    type Output = GrammarCompiler;
    type JsValue = GrammarCompilerHandle;

    fn compute(&mut self) -> napi::Result<GrammarCompiler> {
        guard(|| GrammarCompiler::new(Arc::clone(&self.tokenizer)).map_err(model_error))
    }

    fn resolve(
        &mut self,
        _env: Env,
        compiler: GrammarCompiler,
    ) -> napi::Result<GrammarCompilerHandle> {
        Ok(GrammarCompilerHandle {
            inner: Arc::new(compiler),
        })
    }
}

/// The grammar compiler of a tokenizer's vocabulary.
#[napi(ts_return_type = "Promise<GrammarCompilerHandle>")]
pub fn create_grammar_compiler(tokenizer: &TokenizerHandle) -> AsyncTask<CreateCompilerTask> {
    AsyncTask::new(CreateCompilerTask {
        tokenizer: Arc::clone(&tokenizer.inner),
    })
}

pub struct CompileTask {
    compiler: Arc<GrammarCompiler>,
    kind: GrammarKind,
    value: String,
}

#[napi]
impl Task for CompileTask {
    type Output = Constraint;
    type JsValue = ConstraintHandle;

    fn compute(&mut self) -> napi::Result<Constraint> {
        guard(|| {
            self.compiler
                .compile(self.kind, &self.value)
                .map_err(model_error)
        })
    }

    fn resolve(&mut self, _env: Env, constraint: Constraint) -> napi::Result<ConstraintHandle> {
        Ok(ConstraintHandle { inner: constraint })
    }
}

#[napi]
impl GrammarCompilerHandle {
    /// Compiles `value` as a grammar of `kind` (`json_schema`, `json_object`, `regex`, `lark`,
    /// `llguidance`); rejects with an `InvalidArgumentError` naming the problem.
    #[napi(ts_return_type = "Promise<ConstraintHandle>")]
    pub fn compile(&self, kind: String, value: String) -> napi::Result<AsyncTask<CompileTask>> {
        let kind = GrammarKind::parse(&kind).map_err(model_error)?;
        Ok(AsyncTask::new(CompileTask {
            compiler: Arc::clone(&self.inner),
            kind,
            value,
        }))
    }

    #[napi(getter)]
    pub fn vocab_size(&self) -> u32 {
        self.inner.vocab_size() as u32
    }
}

#[napi]
impl ConstraintHandle {
    /// The tokens a grammar-constrained sequence is allowed next, given what it has read so
    /// far (`tokens`); for tests and tools. Empty once nothing but the end is allowed.
    #[napi(catch_unwind)]
    pub fn allowed_after(&self, tokens: Vec<u32>, vocab: u32) -> napi::Result<Vec<u32>> {
        let mut c = self.inner.resumed(&tokens).map_err(model_error)?;
        let mut logits = vec![0f32; vocab as usize];
        c.mask_logits(&mut logits).map_err(model_error)?;
        Ok(logits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .map(|(i, _)| i as u32)
            .collect())
    }
}
