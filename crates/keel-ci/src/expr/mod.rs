//! GitHub Actions `${{ }}` expressions: [`lexer`], [`parser`], [`eval`] with
//! the semantics of GitHub's own implementations (actions/languageservices,
//! whose 1,020 cross-language cases `tests/expressions.rs` runs).

pub mod eval;
pub mod json;
pub mod lexer;
pub mod parser;
pub mod value;

pub use eval::{Functions, NoFunctions};
pub use parser::{Expr, FuncSig};
pub use value::{Kind, Object, Value};

/// Why an expression failed, with GitHub's message texts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    /// The message already says where.
    #[error("{0}")]
    Lex(String),
    #[error("{message}. Located at position {position} within expression: {expr}")]
    Parse {
        message: String,
        position: usize,
        expr: String,
    },
    /// A limit of the whole expression (depth), which GitHub reports
    /// without a position.
    #[error("{0}")]
    Limit(String),
    #[error("{0}")]
    Eval(String),
}

impl ExprError {
    /// The message without the position suffix (how workflow files report
    /// parse errors).
    pub fn short(&self) -> String {
        match self {
            ExprError::Parse { message, .. } => message.clone(),
            e => e.to_string(),
        }
    }
}

/// Lexes and parses `src` against the named contexts and extension
/// functions it may use. `None` for an empty expression.
pub fn compile(
    src: &str,
    contexts: &[&str],
    functions: &[FuncSig],
) -> Result<Option<Expr>, ExprError> {
    let tokens = lexer::lex(src)?;
    let contexts: Vec<String> = contexts.iter().map(|c| c.to_lowercase()).collect();
    parser::parse(src, &tokens, &contexts, functions)
}

/// Evaluates a compiled expression (`None` is null).
pub fn evaluate(e: Option<&Expr>, ctx: &Object, f: &dyn Functions) -> Result<Value, ExprError> {
    match e {
        None => Ok(Value::Null),
        Some(e) => eval::eval(e, ctx, f).map_err(ExprError::Eval),
    }
}

/// Compiles and evaluates `src` with the context names `ctx` has.
pub fn eval_str(
    src: &str,
    ctx: &Object,
    functions: &[FuncSig],
    f: &dyn Functions,
) -> Result<Value, ExprError> {
    let names: Vec<&str> = ctx.iter().map(|(k, _)| k.as_str()).collect();
    let e = compile(src, &names, functions)?;
    evaluate(e.as_ref(), ctx, f)
}
