//! Recursive-descent parser with GitHub's precedence (`||` < `&&` < `==`/`!=`
//! < comparisons < `!` < index/property access), depth limit and messages.

use super::ExprError;
use super::lexer::{Tok, Token};
use super::value::Value;

/// Deepest nesting GitHub accepts.
pub const MAX_DEPTH: usize = 50;

#[derive(Debug, Clone)]
pub enum Expr {
    Literal(Value),
    Context(String),
    /// `expr[index]`, `expr.name`; `None` index is `*`.
    Index(Box<Expr>, Option<Box<Expr>>),
    Not(Box<Expr>),
    Binary(Box<Expr>, Tok, Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Group(Box<Expr>),
    Call(String, Vec<Expr>),
}

/// A function the parser accepts, with its argument bounds.
#[derive(Debug, Clone)]
pub struct FuncSig {
    pub name: String,
    pub min: usize,
    pub max: usize,
}

/// The built-in functions and their argument bounds.
pub const BUILTINS: &[(&str, usize, usize)] = &[
    ("case", 3, usize::MAX),
    ("contains", 2, 2),
    ("endswith", 2, 2),
    ("format", 1, 255),
    ("fromjson", 1, 1),
    ("join", 1, 2),
    ("startswith", 2, 2),
    ("tojson", 1, 1),
];

struct Parser<'a> {
    tokens: &'a [Token],
    pos: usize,
    depth: usize,
    src: &'a str,
    contexts: &'a [String],
    functions: &'a [FuncSig],
}

/// Parses `src`; `contexts` are the named values it may use (lowercase),
/// `functions` the extension functions beyond the built-ins.
pub fn parse(
    src: &str,
    tokens: &[Token],
    contexts: &[String],
    functions: &[FuncSig],
) -> Result<Option<Expr>, ExprError> {
    let mut p = Parser {
        tokens,
        pos: 0,
        depth: 0,
        src,
        contexts,
        functions,
    };
    if p.at_end() {
        return Ok(None);
    }
    let e = p.expression()?;
    if !p.at_end() {
        return Err(p.error("Unexpected symbol", p.peek()));
    }
    Ok(Some(e))
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }
    fn previous(&self) -> &Token {
        &self.tokens[self.pos.saturating_sub(1)]
    }
    fn at_end(&self) -> bool {
        self.peek().kind == Tok::Eof
    }
    fn check(&self, k: Tok) -> bool {
        !self.at_end() && self.peek().kind == k
    }
    fn matches(&mut self, kinds: &[Tok]) -> bool {
        for &k in kinds {
            if self.check(k) {
                self.pos += 1;
                return true;
            }
        }
        false
    }
    fn error(&self, what: &str, tok: &Token) -> ExprError {
        ExprError::Parse {
            message: format!("{what}: '{}'", tok.display()),
            position: tok.col + 1,
            expr: self.src.to_string(),
        }
    }
    fn incr(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ExprError::Limit(format!(
                "Exceeded max expression depth {MAX_DEPTH}"
            )));
        }
        Ok(())
    }

    fn expression(&mut self) -> Result<Expr, ExprError> {
        self.incr()?;
        let r = self.or();
        self.depth -= 1;
        r
    }

    fn or(&mut self) -> Result<Expr, ExprError> {
        let first = self.and()?;
        if !self.check(Tok::Or) {
            return Ok(first);
        }
        self.incr()?;
        let mut args = vec![first];
        while self.matches(&[Tok::Or]) {
            args.push(self.and()?);
        }
        self.depth -= 1;
        Ok(Expr::Or(args))
    }

    fn and(&mut self) -> Result<Expr, ExprError> {
        let first = self.equality()?;
        if !self.check(Tok::And) {
            return Ok(first);
        }
        self.incr()?;
        let mut args = vec![first];
        while self.matches(&[Tok::And]) {
            args.push(self.equality()?);
        }
        self.depth -= 1;
        Ok(Expr::And(args))
    }

    fn equality(&mut self) -> Result<Expr, ExprError> {
        let mut e = self.comparison()?;
        while self.matches(&[Tok::BangEq, Tok::EqEq]) {
            let op = self.previous().kind;
            let r = self.comparison()?;
            e = Expr::Binary(Box::new(e), op, Box::new(r));
        }
        Ok(e)
    }

    fn comparison(&mut self) -> Result<Expr, ExprError> {
        let mut e = self.unary()?;
        while self.matches(&[Tok::Gt, Tok::Ge, Tok::Lt, Tok::Le]) {
            let op = self.previous().kind;
            let r = self.unary()?;
            e = Expr::Binary(Box::new(e), op, Box::new(r));
        }
        Ok(e)
    }

    fn unary(&mut self) -> Result<Expr, ExprError> {
        if self.matches(&[Tok::Bang]) {
            self.incr()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.index()
    }

    fn index(&mut self) -> Result<Expr, ExprError> {
        let mut e = self.call()?;
        if !matches!(e, Expr::Group(_) | Expr::Call(..) | Expr::Context(_)) {
            return Ok(e);
        }
        let mut increased = 0;
        let result = loop {
            if self.matches(&[Tok::LBracket]) {
                let idx = if self.matches(&[Tok::Star]) {
                    None
                } else {
                    match self.expression() {
                        Ok(x) => Some(Box::new(x)),
                        Err(err) => break Err(err),
                    }
                };
                if !self.matches(&[Tok::RBracket]) {
                    break Err(self.error("Unexpected symbol", self.peek()));
                }
                if let Err(err) = self.incr() {
                    break Err(err);
                }
                increased += 1;
                e = Expr::Index(Box::new(e), idx);
            } else if self.matches(&[Tok::Dot]) {
                if let Err(err) = self.incr() {
                    break Err(err);
                }
                increased += 1;
                if self.matches(&[Tok::Ident]) {
                    let name = self.previous().lexeme.clone();
                    e = Expr::Index(
                        Box::new(e),
                        Some(Box::new(Expr::Literal(Value::String(name)))),
                    );
                } else if self.matches(&[Tok::Star]) {
                    e = Expr::Index(Box::new(e), None);
                } else {
                    break Err(self.error("Unexpected symbol", self.peek()));
                }
            } else {
                break Ok(e);
            }
        };
        self.depth -= increased;
        result
    }

    fn call(&mut self) -> Result<Expr, ExprError> {
        if !self.check(Tok::Ident) {
            return self.primary();
        }
        self.pos += 1;
        let ident = self.previous().clone();
        if !self.matches(&[Tok::LParen]) {
            let lower = ident.lexeme.to_lowercase();
            if !self.contexts.contains(&lower) {
                return Err(self.error("Unrecognized named-value", &ident));
            }
            return Ok(Expr::Context(lower));
        }
        let mut args = Vec::new();
        while !self.matches(&[Tok::RParen]) {
            args.push(self.expression()?);
            // An argument list the input ends in: GitHub names the last token.
            if self.at_end() {
                return Err(self.error("Unexpected end of expression", self.previous()));
            }
            if !self.check(Tok::RParen) && !self.matches(&[Tok::Comma]) {
                return Err(self.error("Unexpected symbol", self.peek()));
            }
        }
        let name = ident.lexeme.to_lowercase();
        let (min, max) = if let Some((_, min, max)) = BUILTINS.iter().find(|(n, _, _)| *n == name) {
            (*min, *max)
        } else if let Some(f) = self.functions.iter().find(|f| f.name == name) {
            (f.min, f.max)
        } else {
            return Err(self.error("Unrecognized function", &ident));
        };
        if args.len() < min {
            return Err(self.error("Too few parameters supplied", &ident));
        }
        if args.len() > max {
            return Err(self.error("Too many parameters supplied", &ident));
        }
        if name == "case" && args.len() % 2 == 0 {
            return Err(self.error(
                "Even number of parameters supplied, requires an odd number of parameters",
                &ident,
            ));
        }
        Ok(Expr::Call(name, args))
    }

    fn primary(&mut self) -> Result<Expr, ExprError> {
        if self.matches(&[Tok::False]) {
            return Ok(Expr::Literal(Value::Bool(false)));
        }
        if self.matches(&[Tok::True]) {
            return Ok(Expr::Literal(Value::Bool(true)));
        }
        if self.matches(&[Tok::Null]) {
            return Ok(Expr::Literal(Value::Null));
        }
        if self.matches(&[Tok::Number, Tok::String]) {
            return Ok(Expr::Literal(
                self.previous().value.clone().unwrap_or(Value::Null),
            ));
        }
        if self.matches(&[Tok::LParen]) {
            let e = self.expression()?;
            if self.at_end() {
                return Err(self.error("Unexpected end of expression", self.previous()));
            }
            if !self.matches(&[Tok::RParen]) {
                return Err(self.error("Unexpected symbol", self.peek()));
            }
            return Ok(Expr::Group(Box::new(e)));
        }
        if self.at_end() {
            return Err(self.error("Unexpected end of expression", self.previous()));
        }
        Err(self.error("Unexpected symbol", self.peek()))
    }
}
