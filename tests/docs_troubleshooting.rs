//! `docs/troubleshooting.md` and the source agree: (a) every message the guide lists (each
//! line of a `vmtel` code block) is made of text that the source puts in a message, and (b)
//! every message the source can show a user is listed in the guide.
//!
//! # What counts as a user-facing message
//!
//! The source files are those of the crate's module tree (from `src/lib.rs` and
//! `src/main.rs`, following `mod` items), less anything under `#[cfg(test)]`. A *sink* is a
//! place where vmtel hands text to a user, by its shape in the syntax tree:
//!
//! | sink | the message |
//! |---|---|
//! | the macros `warn!`, `error!` (log lines at WARN and ERROR), `bail!`, `anyhow!`, `eprintln!` | the format string and its arguments |
//! | the attribute `#[error(...)]` (thiserror) | the format string and its arguments |
//! | the methods `.context(m)`, `.with_context(|| m)`, `.map_err(|_| m)`, `.ok_or_else(|| m)` | `m` |
//! | the method `.once(cause, || m)` (a collector's warning, logged once per cause) | `m` |
//! | the methods `.report(m, ..)`, `.report_wait(m, ..)`, `.report_wait_probing(m, ..)` (an output's failure, logged) and `.fail(m)` (the history store's failure, logged and shown on the agent page) | `m` |
//! | the method `.push(m)` in a function `problems` or `*_problems` that returns `Vec<String>` (the configuration checks) or on a list named `findings` (`vmtel check-output`) | `m` |
//! | the calls `Err(m)`, `Error::config(m)`, `Error::transport(m)`, `Error::server(m)`, `Error::new(kind, m)`, `Error::other(m)`, `QueryError::Unavailable(m)`, `QueryError::Upstream(m)` | `m` |
//! | a call or tuple whose first element is a `StatusCode::` constant other than `OK` (an HTTP answer) | its last element |
//!
//! `debug!` and `trace!` are not sinks. `info!` reports normal operation: the guide may list
//! an `info!` line (check (a) accepts its text) but need not (check (b) leaves it out).
//!
//! The text of a message is worked out from the expression `m`, as far as the syntax shows it:
//! a string literal is fixed text; `format!` (and the sink macros) is its format string, whose
//! placeholders take the text of their arguments; a local variable (`let`, `if let`, `match`
//! arm, also through tuples and `Some`/`Ok`/`Err`) takes the text of what it was bound to; an
//! `if` or `match` gives each branch as an alternative; `.into()`, `.to_string()`,
//! `.to_owned()`, `.clone()` and the like pass text through; `cond.then(|| m)` is `m`;
//! `opt.map(|x| m).unwrap_or_default()` is `m` or nothing (and so on for `unwrap_or`,
//! `unwrap_or_else`, `map_or_else`); a call of one of vmtel's functions whose return type holds
//! `String` or `str` takes the text of what it returns. Anything else (a field, a parameter, another crate's error, a `{:?}` placeholder)
//! is runtime text, which the guide writes as a `<placeholder>`. Parts without a letter
//! (`"{e}"`, `"; "`) need not be listed: the message is where the text comes from.
//!
//! # The checks
//!
//! Each message becomes a regular expression: fixed text as it is (white space matches any
//! white space), runtime text as `.*?`, alternatives as `(?:a|b)`.
//!
//! * (a) Every letter and digit of every listed message, outside its placeholders, is matched
//!   by the fixed text of some message of the source, or by a whole string literal or constant
//!   of three words or more elsewhere in the source (text that reaches a message through a
//!   parameter or a field, such as the fix an error constructor is given). A listed message
//!   whose words no longer exist (a changed or removed message) fails, with the words.
//! * (b) Every fixed text of every message of the source that holds a letter is matched within
//!   some listed message (by a message of the source it is part of). A new or changed message
//!   fails, with its file and line.
//!
//! Placeholders of listed messages are masked before matching, so that fixed text never
//! matches inside one; among alternatives the longest is tried first.
//!
//! `VMTEL_LIST_MESSAGES=1 cargo test --test docs_troubleshooting -- --nocapture` prints every
//! message of the source as the check sees it (`{…}` for runtime text, `(a|b)` for
//! alternatives), for writing the guide.
//!
//! Every sink kind must also be found at least once, so that a rule whose shape went out of
//! use is noticed (and updated here) rather than silently matching nothing.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use regex::Regex;
use syn::visit::Visit;
use syn::{Expr, Lit, Pat};
use vmtel::serve::help::{segments, Guide, Segment};

// ---------------------------------------------------------------------------------------------
// Templates: a message as the syntax shows it
// ---------------------------------------------------------------------------------------------

/// A fixed text of the source.
#[derive(Debug, Clone)]
struct Fixed {
    text: String,
    file: String,
    line: usize,
}

/// A piece of a message's text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Piece {
    /// Fixed text (an index into the scanner's list).
    Fixed(usize),
    /// Runtime text.
    Hole,
    /// One of several texts.
    Alt(Vec<Vec<Piece>>),
}

/// What an expression evaluates to, as far as text goes.
#[derive(Debug, Clone)]
enum Val {
    Text(Vec<Piece>),
    Tuple(Vec<Vec<Val>>),
    Variant(String, Vec<Val>),
    Unknown,
}

/// How a pattern variable is reached from the bound value.
#[derive(Debug, Clone)]
enum Step {
    Field(usize),
    Variant(String),
}

#[derive(Clone)]
struct Binding {
    init: Option<Expr>,
    steps: Vec<Step>,
    /// How many bindings were visible where this one was made (its value sees only those).
    visible: usize,
}

/// A function of vmtel's that returns text.
#[derive(Clone)]
struct TextFn {
    file: String,
    block: syn::Block,
}

/// A message found at a sink.
#[derive(Debug, Clone)]
struct Template {
    pieces: Vec<Piece>,
    sink: &'static str,
    file: String,
    line: usize,
}

const SINK_KINDS: &[&str] = &[
    "warn!",
    "error!",
    "bail!",
    "anyhow!",
    "eprintln!",
    "#[error]",
    ".context",
    ".with_context",
    ".map_err",
    ".ok_or_else",
    ".once",
    ".report",
    ".report_wait",
    ".report_wait_probing",
    ".fail",
    ".push",
    "Err",
    "Error::config",
    "Error::transport",
    "Error::server",
    "Error::new",
    "Error::other",
    "QueryError::Unavailable",
    "QueryError::Upstream",
    "StatusCode",
];

struct Scanner {
    fixed: Vec<Fixed>,
    fixed_ids: HashMap<(String, usize, usize, usize), usize>,
    templates: Vec<Template>,
    seen: HashSet<(Vec<Piece>, &'static str)>,
    text_fns: HashMap<String, Vec<TextFn>>,
    file: String,
    env: Vec<(String, Binding)>,
    resolving: Vec<usize>,
    following: Vec<String>,
    /// The functions being walked, innermost last: whether each is a configuration check
    /// (named `problems` or `*_problems`, returning `Vec<String>`).
    fns: Vec<bool>,
    /// Other string literals and constants of three words or more (see [`check`]).
    phrases: BTreeSet<String>,
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.meta.require_list().is_ok_and(|l| {
                l.tokens
                    .clone()
                    .into_iter()
                    .any(|t| matches!(&t, TokenTree::Ident(i) if i == "test"))
            })
    })
}

fn last_ident(path: &syn::Path) -> String {
    path.segments
        .last()
        .map(|s| s.ident.to_string())
        .unwrap_or_default()
}

fn path_names(path: &syn::Path) -> Vec<String> {
    path.segments.iter().map(|s| s.ident.to_string()).collect()
}

/// Splits a macro's tokens at its top-level commas.
fn split_commas(tokens: TokenStream) -> Vec<TokenStream> {
    let mut out = vec![TokenStream::new()];
    for t in tokens {
        match &t {
            TokenTree::Punct(p) if p.as_char() == ',' => out.push(TokenStream::new()),
            _ => {
                if let Some(last) = out.last_mut() {
                    last.extend([t]);
                }
            }
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// A format string and its arguments, from a format-like macro's (or `#[error]`'s) tokens:
/// the first argument that is a lone string literal; tracing's fields before it are skipped.
fn format_args(tokens: TokenStream) -> Option<(syn::LitStr, Vec<Expr>, HashMap<String, Expr>)> {
    let parts = split_commas(tokens);
    let at = parts
        .iter()
        .position(|p| syn::parse2::<syn::LitStr>(p.clone()).is_ok())?;
    let lit = syn::parse2::<syn::LitStr>(parts[at].clone()).ok()?;
    let mut positional = Vec::new();
    let mut named = HashMap::new();
    for p in &parts[at + 1..] {
        match syn::parse2::<Expr>(p.clone()) {
            Ok(Expr::Assign(a)) => {
                if let Expr::Path(left) = &*a.left {
                    named.insert(last_ident(&left.path), (*a.right).clone());
                }
            }
            Ok(e) => positional.push(e),
            Err(_) => positional.push(syn::parse_quote!(__unknown)),
        }
    }
    Some((lit, positional, named))
}

impl Scanner {
    fn new(text_fns: HashMap<String, Vec<TextFn>>) -> Scanner {
        Scanner {
            fixed: Vec::new(),
            fixed_ids: HashMap::new(),
            templates: Vec::new(),
            seen: HashSet::new(),
            text_fns,
            file: String::new(),
            env: Vec::new(),
            resolving: Vec::new(),
            following: Vec::new(),
            fns: Vec::new(),
            phrases: BTreeSet::new(),
        }
    }

    fn fixed_piece(&mut self, text: &str, span: proc_macro2::Span, part: usize) -> Piece {
        let start = span.start();
        let key = (self.file.clone(), start.line, start.column, part);
        let id = *self.fixed_ids.entry(key).or_insert_with(|| {
            self.fixed.push(Fixed {
                text: text.to_owned(),
                file: self.file.clone(),
                line: start.line,
            });
            self.fixed.len() - 1
        });
        Piece::Fixed(id)
    }

    /// The pieces of a format string whose placeholders take `args`.
    fn format_pieces(
        &mut self,
        lit: &syn::LitStr,
        args: &[Expr],
        named: &HashMap<String, Expr>,
    ) -> Vec<Piece> {
        let text = lit.value();
        let mut out = Vec::new();
        let mut run = String::new();
        let mut part = 0;
        let mut next_positional = 0;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    run.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    run.push('}');
                }
                '{' => {
                    let mut inner = String::new();
                    for c in chars.by_ref() {
                        if c == '}' {
                            break;
                        }
                        inner.push(c);
                    }
                    if !run.is_empty() {
                        out.push(self.fixed_piece(&run, lit.span(), part));
                        part += 1;
                        run.clear();
                    }
                    let (arg, spec) = inner.split_once(':').unwrap_or((&inner, ""));
                    let expr: Option<Expr> = if arg.is_empty() {
                        next_positional += 1;
                        args.get(next_positional - 1).cloned()
                    } else if let Ok(i) = arg.parse::<usize>() {
                        args.get(i).cloned()
                    } else {
                        named.get(arg).cloned().or_else(|| syn::parse_str(arg).ok())
                    };
                    match expr {
                        Some(e) if !spec.contains('?') => {
                            let vals = self.extract(&e);
                            out.extend(self.pieces_of(vals));
                        }
                        _ => out.push(Piece::Hole),
                    }
                }
                c => run.push(c),
            }
        }
        if !run.is_empty() {
            out.push(self.fixed_piece(&run, lit.span(), part));
        }
        out
    }

    /// The pieces that print `vals`: one text inline, several as alternatives (alternatives
    /// that read the same are one).
    fn pieces_of(&self, vals: Vec<Val>) -> Vec<Piece> {
        let mut alts: Vec<Vec<Piece>> = Vec::new();
        let mut stack = vals;
        while let Some(v) = stack.pop() {
            let alt = match v {
                Val::Text(p) => p,
                Val::Variant(_, inner) => {
                    stack.extend(inner);
                    continue;
                }
                Val::Tuple(_) | Val::Unknown => vec![Piece::Hole],
            };
            let text = render(&alt, &self.fixed);
            if !alts.iter().any(|a| render(a, &self.fixed) == text) {
                alts.push(alt);
            }
        }
        alts.reverse();
        match alts.len() {
            0 => vec![Piece::Hole],
            1 => alts.pop().unwrap_or_default(),
            _ => vec![Piece::Alt(alts)],
        }
    }

    fn lookup(&self, name: &str, visible: usize) -> Option<(usize, Binding)> {
        self.env[..visible.min(self.env.len())]
            .iter()
            .enumerate()
            .rev()
            .find(|(_, (n, _))| n == name)
            .map(|(i, (_, b))| (i, b.clone()))
    }

    fn resolve(&mut self, name: &str) -> Vec<Val> {
        let Some((index, b)) = self.lookup(name, self.env.len()) else {
            return vec![Val::Unknown];
        };
        if self.resolving.contains(&index) {
            return vec![Val::Unknown];
        }
        let Some(init) = b.init else {
            return vec![Val::Unknown];
        };
        // The value as it was bound: only the bindings made before it are visible.
        self.resolving.push(index);
        let later = self.env.split_off(b.visible.min(self.env.len()));
        let mut vals = self.extract(&init);
        self.env.extend(later);
        self.resolving.pop();
        for step in &b.steps {
            vals = vals
                .into_iter()
                .flat_map(|v| match (step, v) {
                    (Step::Field(i), Val::Tuple(mut elems)) if *i < elems.len() => {
                        elems.swap_remove(*i)
                    }
                    (Step::Variant(want), Val::Variant(name, inner)) if *want == name => inner,
                    (_, Val::Unknown) => vec![Val::Unknown],
                    _ => Vec::new(),
                })
                .collect();
        }
        vals
    }

    fn bind(&mut self, pat: &Pat, init: Option<&Expr>, steps: Vec<Step>) {
        match pat {
            Pat::Ident(p) => {
                let visible = self.env.len();
                self.env.push((
                    p.ident.to_string(),
                    Binding {
                        init: init.cloned(),
                        steps: steps.clone(),
                        visible,
                    },
                ));
                if let Some((_, sub)) = &p.subpat {
                    self.bind(sub, init, steps);
                }
            }
            Pat::Tuple(t) => {
                for (i, p) in t.elems.iter().enumerate() {
                    let mut s = steps.clone();
                    s.push(Step::Field(i));
                    self.bind(p, init, s);
                }
            }
            Pat::TupleStruct(t) => {
                let name = last_ident(&t.path);
                for p in &t.elems {
                    let mut s = steps.clone();
                    s.push(Step::Variant(name.clone()));
                    self.bind(p, init, s);
                }
            }
            Pat::Reference(r) => self.bind(&r.pat, init, steps),
            Pat::Type(t) => self.bind(&t.pat, init, steps),
            Pat::Paren(p) => self.bind(&p.pat, init, steps),
            Pat::Or(o) => {
                if let Some(first) = o.cases.first() {
                    self.bind(first, init, steps);
                }
            }
            Pat::Struct(s) => {
                for f in &s.fields {
                    self.bind(&f.pat, None, Vec::new());
                }
            }
            Pat::Slice(s) => {
                for p in &s.elems {
                    self.bind(p, None, Vec::new());
                }
            }
            _ => {}
        }
    }

    /// Binds the `let`s of an `if`/`while` condition (`if let P = e && ...`).
    fn bind_cond(&mut self, cond: &Expr) {
        match cond {
            Expr::Let(l) => self.bind(&l.pat, Some(&l.expr), Vec::new()),
            Expr::Binary(b) => {
                self.bind_cond(&b.left);
                self.bind_cond(&b.right);
            }
            _ => {}
        }
    }

    fn extract_block(&mut self, block: &syn::Block) -> Vec<Val> {
        let mark = self.env.len();
        let mut out = vec![];
        for stmt in &block.stmts {
            match stmt {
                syn::Stmt::Local(l) => {
                    self.bind(&l.pat, l.init.as_ref().map(|i| &*i.expr), Vec::new())
                }
                syn::Stmt::Expr(e, None) => out = self.extract(e),
                _ => {}
            }
        }
        self.env.truncate(mark);
        out
    }

    /// What a called function of vmtel's returns, if it returns text.
    fn follow(&mut self, name: &str) -> Vec<Val> {
        let Some(fns) = self.text_fns.get(name).cloned() else {
            return vec![Val::Unknown];
        };
        if self.following.iter().any(|f| f == name) || self.following.len() > 6 {
            return vec![Val::Unknown];
        }
        self.following.push(name.to_owned());
        let env = std::mem::take(&mut self.env);
        let file = self.file.clone();
        let mut out = Vec::new();
        for f in fns {
            self.file = f.file.clone();
            out.extend(self.extract_block(&f.block));
            let mut returns = Returns(Vec::new());
            returns.visit_block(&f.block);
            for r in returns.0 {
                out.extend(self.extract(&r));
            }
        }
        self.file = file;
        self.env = env;
        self.following.pop();
        out
    }

    /// The text an expression evaluates to.
    fn extract(&mut self, e: &Expr) -> Vec<Val> {
        match e {
            Expr::Lit(l) => match &l.lit {
                Lit::Str(s) => vec![Val::Text(vec![self.fixed_piece(&s.value(), s.span(), 0)])],
                _ => vec![Val::Unknown],
            },
            Expr::Macro(m) => {
                let name = last_ident(&m.mac.path);
                if matches!(name.as_str(), "format" | "format_args" | "anyhow") {
                    match format_args(m.mac.tokens.clone()) {
                        Some((lit, args, named)) => {
                            vec![Val::Text(self.format_pieces(&lit, &args, &named))]
                        }
                        None => vec![Val::Unknown],
                    }
                } else {
                    vec![Val::Unknown]
                }
            }
            Expr::Tuple(t) => {
                let elems = t.elems.iter().map(|x| self.extract(x)).collect();
                vec![Val::Tuple(elems)]
            }
            Expr::Call(c) => {
                let Expr::Path(f) = &*c.func else {
                    return vec![Val::Unknown];
                };
                let name = last_ident(&f.path);
                match (name.as_str(), c.args.first()) {
                    ("Some" | "Ok" | "Err", Some(a)) if c.args.len() == 1 => {
                        vec![Val::Variant(name.clone(), self.extract(a))]
                    }
                    _ => self.follow(&name),
                }
            }
            Expr::MethodCall(m) => match m.method.to_string().as_str() {
                "into" | "to_owned" | "to_string" | "clone" | "as_str" | "as_ref" | "borrow"
                | "trim" | "trim_end" | "trim_start" => self.extract(&m.receiver),
                "then" => match m.args.first() {
                    Some(Expr::Closure(c)) => {
                        vec![Val::Variant("Some".into(), self.extract_closure(c))]
                    }
                    _ => vec![Val::Unknown],
                },
                "and_then" => match m.args.first() {
                    Some(Expr::Closure(c)) => self.extract_closure(c),
                    Some(Expr::Path(p)) => self.follow(&last_ident(&p.path)),
                    _ => vec![Val::Unknown],
                },
                // `opt.map(|x| m)`: `Some(m)` or `None`.
                "map" => match m.args.first() {
                    Some(Expr::Closure(c)) => vec![
                        Val::Variant("Some".into(), self.extract_closure(c)),
                        Val::Variant("None".into(), Vec::new()),
                    ],
                    _ => vec![Val::Unknown],
                },
                // What an option holds, or an empty text (`unwrap_or_default`), or the default.
                "unwrap_or_default" | "unwrap_or" | "unwrap_or_else" | "map_or_else" => {
                    let mut out = Vec::new();
                    let receiver = if m.method == "map_or_else" {
                        match m.args.iter().nth(1) {
                            Some(Expr::Closure(c)) => {
                                vec![Val::Variant("Some".into(), self.extract_closure(c))]
                            }
                            _ => vec![Val::Unknown],
                        }
                    } else {
                        self.extract(&m.receiver)
                    };
                    for v in receiver {
                        match v {
                            Val::Variant(n, inner) if n == "Some" || n == "Ok" => out.extend(inner),
                            Val::Variant(..) => {}
                            other => out.push(other),
                        }
                    }
                    match (m.method.to_string().as_str(), m.args.first()) {
                        ("unwrap_or_default", _) => out.push(Val::Text(Vec::new())),
                        ("unwrap_or", Some(d)) => out.extend(self.extract(d)),
                        ("unwrap_or_else", Some(Expr::Closure(c))) => {
                            out.extend(self.extract_closure(c))
                        }
                        ("map_or_else", Some(Expr::Path(p)))
                            if path_names(&p.path).join("::") == "String::new" =>
                        {
                            out.push(Val::Text(Vec::new()))
                        }
                        _ => out.push(Val::Unknown),
                    }
                    out
                }
                _ => vec![Val::Unknown],
            },
            Expr::Closure(c) => self.extract_closure(c),
            Expr::Block(b) => self.extract_block(&b.block),
            Expr::Unsafe(b) => self.extract_block(&b.block),
            Expr::If(i) => {
                let mark = self.env.len();
                self.bind_cond(&i.cond);
                let mut out = self.extract_block(&i.then_branch);
                self.env.truncate(mark);
                if let Some((_, els)) = &i.else_branch {
                    out.extend(self.extract(els));
                }
                out
            }
            Expr::Match(m) => {
                let mut out = Vec::new();
                for arm in &m.arms {
                    let mark = self.env.len();
                    self.bind(&arm.pat, Some(&m.expr), Vec::new());
                    out.extend(self.extract(&arm.body));
                    self.env.truncate(mark);
                }
                out
            }
            Expr::Paren(p) => self.extract(&p.expr),
            Expr::Group(g) => self.extract(&g.expr),
            Expr::Reference(r) => self.extract(&r.expr),
            Expr::Return(r) => r.expr.as_ref().map_or_else(Vec::new, |x| self.extract(x)),
            Expr::Path(p) if p.path.segments.len() == 1 => {
                let name = last_ident(&p.path);
                if name == "None" {
                    vec![Val::Variant(name, Vec::new())]
                } else {
                    self.resolve(&name)
                }
            }
            _ => vec![Val::Unknown],
        }
    }

    fn extract_closure(&mut self, c: &syn::ExprClosure) -> Vec<Val> {
        let mark = self.env.len();
        for p in &c.inputs {
            self.bind(p, None, Vec::new());
        }
        let out = self.extract(&c.body);
        self.env.truncate(mark);
        out
    }

    /// Visits the blocks and macro calls among raw tokens.
    fn visit_tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < trees.len() {
            match (&trees[i], trees.get(i + 1), trees.get(i + 2)) {
                (
                    TokenTree::Ident(name),
                    Some(TokenTree::Punct(bang)),
                    Some(TokenTree::Group(g)),
                ) if bang.as_char() == '!' => {
                    let call: TokenStream = [
                        TokenTree::Ident(name.clone()),
                        TokenTree::Punct(bang.clone()),
                        TokenTree::Group(g.clone()),
                    ]
                    .into_iter()
                    .collect();
                    if let Ok(mac) = syn::parse2::<syn::Macro>(call) {
                        self.visit_macro(&mac);
                    }
                    i += 3;
                    continue;
                }
                (TokenTree::Group(g), _, _) => {
                    let whole: TokenStream = [TokenTree::Group(g.clone())].into_iter().collect();
                    match syn::parse2::<syn::Block>(whole) {
                        Ok(b) if g.delimiter() == proc_macro2::Delimiter::Brace => {
                            self.visit_block(&b)
                        }
                        _ => self.visit_tokens(g.stream()),
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }

    /// Records the messages `vals` of a sink.
    fn sink(&mut self, kind: &'static str, vals: Vec<Val>, line: usize) {
        let mut stack = vals;
        while let Some(v) = stack.pop() {
            match v {
                Val::Text(pieces) => {
                    if self.seen.insert((pieces.clone(), kind)) {
                        self.templates.push(Template {
                            pieces,
                            sink: kind,
                            file: self.file.clone(),
                            line,
                        });
                    }
                }
                Val::Variant(_, inner) => stack.extend(inner),
                Val::Tuple(_) | Val::Unknown => {}
            }
        }
    }

    fn sink_expr(&mut self, kind: &'static str, e: &Expr, line: usize) {
        let vals = self.extract(e);
        self.sink(kind, vals, line);
    }

    fn sink_format(&mut self, kind: &'static str, tokens: TokenStream, line: usize) {
        if let Some((lit, args, named)) = format_args(tokens) {
            let pieces = self.format_pieces(&lit, &args, &named);
            self.sink(kind, vec![Val::Text(pieces)], line);
        }
    }
}

/// The `return` expressions of a function body (not those of closures in it).
struct Returns(Vec<Expr>);

impl<'ast> Visit<'ast> for Returns {
    fn visit_expr_return(&mut self, r: &'ast syn::ExprReturn) {
        if let Some(e) = &r.expr {
            self.0.push((**e).clone());
        }
    }
    fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
    fn visit_item(&mut self, _: &'ast syn::Item) {}
}

/// A configuration check: `fn problems(..) -> Vec<String>` (or `*_problems`).
fn is_problems_fn(sig: &syn::Signature) -> bool {
    let name = sig.ident.to_string();
    let returns = match &sig.output {
        syn::ReturnType::Type(_, t) => quote_tokens(t).replace(' ', "") == "Vec<String>",
        syn::ReturnType::Default => false,
    };
    (name == "problems" || name.ends_with("_problems")) && returns
}

fn line_of(span: proc_macro2::Span) -> usize {
    span.start().line
}

fn status_constant(e: &Expr) -> bool {
    match e {
        Expr::Path(p) => {
            let names = path_names(&p.path);
            names.len() >= 2
                && names[names.len() - 2] == "StatusCode"
                && names[names.len() - 1] != "OK"
        }
        _ => false,
    }
}

impl<'ast> Visit<'ast> for Scanner {
    fn visit_item(&mut self, i: &'ast syn::Item) {
        let attrs = match i {
            syn::Item::Fn(x) => &x.attrs,
            syn::Item::Mod(x) => &x.attrs,
            syn::Item::Impl(x) => &x.attrs,
            syn::Item::Const(x) => &x.attrs,
            syn::Item::Static(x) => &x.attrs,
            syn::Item::Enum(x) => &x.attrs,
            syn::Item::Struct(x) => &x.attrs,
            syn::Item::Use(x) => &x.attrs,
            _ => return syn::visit::visit_item(self, i),
        };
        if !is_cfg_test(attrs) {
            syn::visit::visit_item(self, i);
        }
    }

    fn visit_impl_item(&mut self, i: &'ast syn::ImplItem) {
        if let syn::ImplItem::Fn(f) = i {
            if is_cfg_test(&f.attrs) {
                return;
            }
        }
        syn::visit::visit_impl_item(self, i);
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        let env = std::mem::take(&mut self.env);
        self.fns.push(is_problems_fn(&f.sig));
        syn::visit::visit_item_fn(self, f);
        self.fns.pop();
        self.env = env;
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        let env = std::mem::take(&mut self.env);
        self.fns.push(is_problems_fn(&f.sig));
        syn::visit::visit_impl_item_fn(self, f);
        self.fns.pop();
        self.env = env;
    }

    fn visit_lit_str(&mut self, l: &'ast syn::LitStr) {
        let text = l.value();
        if text.split_whitespace().count() >= 3 {
            self.phrases.insert(text);
        }
    }

    fn visit_fn_arg(&mut self, a: &'ast syn::FnArg) {
        if let syn::FnArg::Typed(t) = a {
            self.bind(&t.pat, None, Vec::new());
        }
    }

    fn visit_block(&mut self, b: &'ast syn::Block) {
        let mark = self.env.len();
        for stmt in &b.stmts {
            match stmt {
                syn::Stmt::Local(l) => {
                    if let Some(init) = &l.init {
                        self.visit_expr(&init.expr);
                        if let Some((_, diverge)) = &init.diverge {
                            self.visit_expr(diverge);
                        }
                    }
                    self.bind(&l.pat, l.init.as_ref().map(|i| &*i.expr), Vec::new());
                }
                other => self.visit_stmt(other),
            }
        }
        self.env.truncate(mark);
    }

    fn visit_expr_closure(&mut self, c: &'ast syn::ExprClosure) {
        let mark = self.env.len();
        for p in &c.inputs {
            self.bind(p, None, Vec::new());
        }
        self.visit_expr(&c.body);
        self.env.truncate(mark);
    }

    fn visit_expr_match(&mut self, m: &'ast syn::ExprMatch) {
        self.visit_expr(&m.expr);
        for arm in &m.arms {
            let mark = self.env.len();
            self.bind(&arm.pat, Some(&m.expr), Vec::new());
            if let Some((_, g)) = &arm.guard {
                self.visit_expr(g);
            }
            self.visit_expr(&arm.body);
            self.env.truncate(mark);
        }
    }

    fn visit_expr_if(&mut self, i: &'ast syn::ExprIf) {
        self.visit_expr(&i.cond);
        let mark = self.env.len();
        self.bind_cond(&i.cond);
        self.visit_block(&i.then_branch);
        self.env.truncate(mark);
        if let Some((_, els)) = &i.else_branch {
            self.visit_expr(els);
        }
    }

    fn visit_expr_while(&mut self, w: &'ast syn::ExprWhile) {
        self.visit_expr(&w.cond);
        let mark = self.env.len();
        self.bind_cond(&w.cond);
        self.visit_block(&w.body);
        self.env.truncate(mark);
    }

    fn visit_expr_for_loop(&mut self, f: &'ast syn::ExprForLoop) {
        self.visit_expr(&f.expr);
        let mark = self.env.len();
        self.bind(&f.pat, None, Vec::new());
        self.visit_block(&f.body);
        self.env.truncate(mark);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        let name = last_ident(&m.path);
        let line = line_of(
            m.path
                .segments
                .last()
                .map_or_else(proc_macro2::Span::call_site, |s| s.ident.span()),
        );
        let kind = match name.as_str() {
            "warn" => Some("warn!"),
            "error" => Some("error!"),
            "bail" => Some("bail!"),
            "anyhow" => Some("anyhow!"),
            "eprintln" => Some("eprintln!"),
            "info" => Some("info!"),
            _ => None,
        };
        if let Some(kind) = kind {
            self.sink_format(kind, m.tokens.clone(), line);
        }
        // Sinks nested in any macro's arguments (`vec![...]`, `format!(..., x.context(..))`),
        // or in the blocks and macro calls of a body that is not a list of expressions
        // (`select! { recv(rx) -> msg => { ... } }`).
        for part in split_commas(m.tokens.clone()) {
            match syn::parse2::<Expr>(part.clone()) {
                Ok(e) => self.visit_expr(&e),
                Err(_) => self.visit_tokens(part),
            }
        }
    }

    fn visit_attribute(&mut self, a: &'ast syn::Attribute) {
        if a.path().is_ident("error") {
            if let Ok(list) = a.meta.require_list() {
                self.sink_format("#[error]", list.tokens.clone(), line_of(a.pound_token.span));
            }
        }
    }

    fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
        let line = line_of(m.method.span());
        let method = m.method.to_string();
        let in_problems = self.fns.last().copied().unwrap_or(false);
        let receiver_is_list = || {
            in_problems
                || match &*m.receiver {
                    Expr::Path(p) => last_ident(&p.path) == "findings",
                    Expr::Field(f) => matches!(&f.member, syn::Member::Named(n) if n == "findings"),
                    _ => false,
                }
        };
        let (kind, arg): (Option<&'static str>, usize) = match method.as_str() {
            "context" => (Some(".context"), 0),
            "with_context" => (Some(".with_context"), 0),
            "map_err" => (Some(".map_err"), 0),
            "ok_or_else" => (Some(".ok_or_else"), 0),
            "once" => (Some(".once"), 1),
            "report" => (Some(".report"), 0),
            "report_wait" => (Some(".report_wait"), 0),
            "report_wait_probing" => (Some(".report_wait_probing"), 0),
            "fail" => (Some(".fail"), 0),
            "push" if receiver_is_list() => (Some(".push"), 0),
            _ => (None, 0),
        };
        if let (Some(kind), Some(a)) = (kind, m.args.iter().nth(arg)) {
            self.sink_expr(kind, a, line);
        }
        syn::visit::visit_expr_method_call(self, m);
    }

    fn visit_expr_call(&mut self, c: &'ast syn::ExprCall) {
        if let Expr::Path(f) = &*c.func {
            let names = path_names(&f.path);
            let line = line_of(
                f.path
                    .segments
                    .last()
                    .map_or_else(proc_macro2::Span::call_site, |s| s.ident.span()),
            );
            let tail: Vec<&str> = names
                .iter()
                .rev()
                .take(2)
                .rev()
                .map(String::as_str)
                .collect();
            let kind: Option<(&'static str, usize)> = match tail.as_slice() {
                [.., "Err"] => Some(("Err", 0)),
                ["Error", "config"] => Some(("Error::config", 0)),
                ["Error", "transport"] => Some(("Error::transport", 0)),
                ["Error", "server"] => Some(("Error::server", 0)),
                ["Error", "new"] => Some(("Error::new", 1)),
                ["Error", "other"] => Some(("Error::other", 0)),
                ["QueryError", "Unavailable"] => Some(("QueryError::Unavailable", 0)),
                ["QueryError", "Upstream"] => Some(("QueryError::Upstream", 0)),
                _ => None,
            };
            if let Some((kind, i)) = kind {
                if let Some(a) = c.args.iter().nth(i) {
                    self.sink_expr(kind, a, line);
                }
            }
            if c.args.first().is_some_and(status_constant) && c.args.len() > 1 {
                if let Some(last) = c.args.last() {
                    self.sink_expr("StatusCode", last, line);
                }
            }
        }
        syn::visit::visit_expr_call(self, c);
    }

    fn visit_expr_tuple(&mut self, t: &'ast syn::ExprTuple) {
        if t.elems.first().is_some_and(status_constant) && t.elems.len() > 1 {
            if let (Some(first), Some(last)) = (t.elems.first(), t.elems.last()) {
                let line = match first {
                    Expr::Path(p) => p
                        .path
                        .segments
                        .last()
                        .map_or(0, |s| line_of(s.ident.span())),
                    _ => 0,
                };
                self.sink_expr("StatusCode", last, line);
            }
        }
        syn::visit::visit_expr_tuple(self, t);
    }
}

// ---------------------------------------------------------------------------------------------
// The source files
// ---------------------------------------------------------------------------------------------

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file of the crate's module tree, parsed, with modules under `#[cfg(test)]` left out.
fn module_files() -> Vec<(String, syn::File)> {
    let mut out = Vec::new();
    let src = root().join("src");
    for top in ["lib.rs", "main.rs"] {
        load(&src.join(top), &src, &mut out);
    }
    out
}

fn load(file: &Path, dir: &Path, out: &mut Vec<(String, syn::File)>) {
    let text = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    let parsed =
        syn::parse_file(&text).unwrap_or_else(|e| panic!("cannot parse {}: {e}", file.display()));
    let name = file
        .strip_prefix(root())
        .unwrap_or(file)
        .display()
        .to_string();
    if out.iter().any(|(n, _)| *n == name) {
        return;
    }
    submodules(&parsed.items, dir, out);
    out.push((name, parsed));
}

fn submodules(items: &[syn::Item], dir: &Path, out: &mut Vec<(String, syn::File)>) {
    for item in items {
        let syn::Item::Mod(m) = item else { continue };
        if is_cfg_test(&m.attrs) {
            continue;
        }
        let name = m.ident.to_string();
        match &m.content {
            Some((_, inner)) => submodules(inner, &dir.join(&name), out),
            None => {
                let flat = dir.join(format!("{name}.rs"));
                if flat.is_file() {
                    load(&flat, &dir.join(&name), out);
                } else {
                    let nested = dir.join(&name).join("mod.rs");
                    load(&nested, &dir.join(&name), out);
                }
            }
        }
    }
}

/// vmtel's functions that return text (`String` or `str` in the return type), by name.
fn text_fns(files: &[(String, syn::File)]) -> HashMap<String, Vec<TextFn>> {
    struct Index<'a> {
        file: &'a str,
        out: HashMap<String, Vec<TextFn>>,
    }
    fn returns_text(sig: &syn::Signature) -> bool {
        match &sig.output {
            syn::ReturnType::Type(_, t) => {
                let s = quote_tokens(t);
                s.split(|c: char| !c.is_alphanumeric() && c != '_')
                    .any(|w| w == "String" || w == "str")
            }
            syn::ReturnType::Default => false,
        }
    }
    impl<'ast> Visit<'ast> for Index<'_> {
        fn visit_item(&mut self, i: &'ast syn::Item) {
            let test = match i {
                syn::Item::Fn(x) => is_cfg_test(&x.attrs),
                syn::Item::Mod(x) => is_cfg_test(&x.attrs),
                syn::Item::Impl(x) => is_cfg_test(&x.attrs),
                _ => false,
            };
            if !test {
                syn::visit::visit_item(self, i);
            }
        }
        fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
            if returns_text(&f.sig) {
                self.out
                    .entry(f.sig.ident.to_string())
                    .or_default()
                    .push(TextFn {
                        file: self.file.to_owned(),
                        block: (*f.block).clone(),
                    });
            }
        }
        fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
            if returns_text(&f.sig) && !is_cfg_test(&f.attrs) {
                self.out
                    .entry(f.sig.ident.to_string())
                    .or_default()
                    .push(TextFn {
                        file: self.file.to_owned(),
                        block: f.block.clone(),
                    });
            }
        }
    }
    let mut index = Index {
        file: "",
        out: HashMap::new(),
    };
    for (name, file) in files {
        index.file = name;
        index.visit_file(file);
    }
    index.out
}

fn quote_tokens(t: &syn::Type) -> String {
    let mut s = TokenStream::new();
    quote::ToTokens::to_tokens(t, &mut s);
    s.to_string()
}

fn scan() -> Scanner {
    let files = module_files();
    let mut s = Scanner::new(text_fns(&files));
    for (name, file) in &files {
        s.file = name.clone();
        s.visit_file(file);
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Matching
// ---------------------------------------------------------------------------------------------

fn weight(s: &str) -> usize {
    s.chars().filter(|c| c.is_alphanumeric()).count()
}

/// A fixed text as a pattern: its white space matches any white space; a trailing line end
/// (of an HTTP answer) is left out.
fn fixed_pattern(text: &str) -> String {
    let mut out = String::new();
    let mut in_space = false;
    for c in text.trim_end_matches('\n').chars() {
        if c.is_whitespace() {
            if !in_space {
                out.push_str(r"\s+");
            }
            in_space = true;
        } else {
            in_space = false;
            out.push_str(&regex::escape(&c.to_string()));
        }
    }
    out
}

/// The template as a regular expression; `groups[k]` is the fixed text of capture group k+1.
fn pattern(pieces: &[Piece], fixed: &[Fixed], out: &mut String, groups: &mut Vec<usize>) {
    for p in pieces {
        match p {
            Piece::Fixed(id) => {
                let text = &fixed[*id].text;
                if weight(text) == 0 {
                    out.push_str(&fixed_pattern(text));
                } else {
                    out.push('(');
                    out.push_str(&fixed_pattern(text));
                    out.push(')');
                    groups.push(*id);
                }
            }
            Piece::Hole => out.push_str(".*?"),
            Piece::Alt(alts) => {
                // Longest first: the regex takes the first alternative that matches, and an
                // empty or shorter one would hide the others.
                let mut alts: Vec<&Vec<Piece>> = alts.iter().collect();
                alts.sort_by_key(|a| std::cmp::Reverse(fixed_len(a, fixed)));
                out.push_str("(?:");
                for (i, a) in alts.into_iter().enumerate() {
                    if i > 0 {
                        out.push('|');
                    }
                    pattern(a, fixed, out, groups);
                }
                out.push(')');
            }
        }
    }
}

/// The length of a template's fixed text.
fn fixed_len(pieces: &[Piece], fixed: &[Fixed]) -> usize {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Fixed(id) => fixed[*id].text.len(),
            Piece::Hole => 0,
            Piece::Alt(alts) => alts.iter().map(|a| fixed_len(a, fixed)).max().unwrap_or(0),
        })
        .sum()
}

/// A template as it reads, with `{…}` for runtime text and `(a|b)` for alternatives.
fn render(pieces: &[Piece], fixed: &[Fixed]) -> String {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Fixed(id) => fixed[*id].text.trim_end_matches('\n').to_owned(),
            Piece::Hole => "{…}".to_owned(),
            Piece::Alt(alts) => format!(
                "({})",
                alts.iter()
                    .map(|a| render(a, fixed))
                    .collect::<Vec<_>>()
                    .join("|")
            ),
        })
        .collect()
}

#[derive(Clone)]
struct Listed {
    text: String,
    line: usize,
}

fn guide() -> Vec<Listed> {
    let path = root().join("docs/troubleshooting.md");
    let md = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    Guide::parse(&md)
        .vmtel_messages()
        .map(|m| Listed {
            text: m.text.clone(),
            line: m.line,
        })
        .collect()
}

/// Byte ranges of a listed message's placeholders.
fn placeholder_ranges(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut at = 0;
    for s in segments(text) {
        let (len, hole) = match s {
            Segment::Fixed(f) => (f.len(), false),
            Segment::Placeholder(p) => (p.len() + 2, true),
        };
        if hole {
            out.push(at..at + len);
        }
        at += len;
    }
    out
}

/// What the checks found.
#[derive(Default)]
struct Findings {
    /// (b): fixed texts of the source's messages that no listed message matches.
    missing: Vec<String>,
    /// (a): listed messages with words no message of the source has.
    stale: Vec<String>,
    /// How many messages of the source were checked.
    messages: usize,
}

impl Findings {
    fn report(&self) -> String {
        let mut report = String::new();
        if !self.missing.is_empty() {
            report.push_str(&format!(
                "{} text(s) of user-facing messages are not in docs/troubleshooting.md: list each message, with its cause and fix, in a ```vmtel block (runtime parts as <placeholder>):\n",
                self.missing.len()
            ));
            for line in &self.missing {
                report.push_str(line);
                report.push('\n');
            }
        }
        if !self.stale.is_empty() {
            report.push_str(&format!(
                "{} message(s) listed in docs/troubleshooting.md are not (or no longer) what the source says: correct or remove them:\n",
                self.stale.len()
            ));
            for line in &self.stale {
                report.push_str(line);
                report.push('\n');
            }
        }
        report
    }
}

fn check(scanner: &Scanner, listed: &[Listed]) -> Findings {
    let compiled: Vec<(Regex, Vec<usize>, &Template)> = scanner
        .templates
        .iter()
        .filter_map(|t| {
            let mut pat = String::new();
            let mut groups = Vec::new();
            pattern(&t.pieces, &scanner.fixed, &mut pat, &mut groups);
            if groups.is_empty() {
                return None;
            }
            let re = Regex::new(&pat).unwrap_or_else(|e| panic!("pattern {pat}: {e}"));
            Some((re, groups, t))
        })
        .collect();
    let phrases: Vec<Regex> = scanner
        .phrases
        .iter()
        .filter_map(|p| Regex::new(&fixed_pattern(p)).ok())
        .collect();
    let mut findings = Findings {
        messages: compiled.iter().filter(|c| c.2.sink != "info!").count(),
        ..Findings::default()
    };
    let mut found: HashSet<usize> = HashSet::new();
    for m in listed {
        // Placeholders are masked (same length), so that no fixed text matches inside one.
        let holes = placeholder_ranges(&m.text);
        let masked: String = m
            .text
            .char_indices()
            .map(|(i, c)| {
                if holes.iter().any(|h| h.contains(&i)) {
                    '\u{1}'
                } else {
                    c
                }
            })
            .collect();
        let mut covered = vec![false; m.text.len()];
        for (re, groups, _) in &compiled {
            for caps in re.captures_iter(&masked) {
                for (k, id) in groups.iter().enumerate() {
                    if let Some(g) = caps.get(k + 1) {
                        found.insert(*id);
                        for c in &mut covered[g.range()] {
                            *c = true;
                        }
                    }
                }
            }
        }
        for re in &phrases {
            for g in re.find_iter(&masked) {
                for c in &mut covered[g.range()] {
                    *c = true;
                }
            }
        }
        let mut words = BTreeSet::new();
        for (i, ch) in m.text.char_indices() {
            if ch.is_alphanumeric() && !covered[i] && !holes.iter().any(|h| h.contains(&i)) {
                let start = m.text[..i]
                    .rfind(|c: char| !c.is_alphanumeric())
                    .map_or(0, |p| p + 1);
                let end = m.text[i..]
                    .find(|c: char| !c.is_alphanumeric())
                    .map_or(m.text.len(), |p| i + p);
                words.insert(m.text[start..end].to_owned());
            }
        }
        if !words.is_empty() {
            findings.stale.push(format!(
                "  docs/troubleshooting.md:{}: {}\n      not in any message of the source: {}",
                m.line,
                m.text,
                words.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    let mut missing = BTreeSet::new();
    for (_, groups, t) in &compiled {
        if t.sink == "info!" {
            continue;
        }
        for id in groups {
            if !found.contains(id) {
                let f = &scanner.fixed[*id];
                missing.insert((
                    f.file.clone(),
                    f.line,
                    format!(
                        "  {}:{}: {:?}\n      in the message ({} at {}:{}): {}",
                        f.file,
                        f.line,
                        f.text.trim_end_matches('\n'),
                        t.sink,
                        t.file,
                        t.line,
                        render(&t.pieces, &scanner.fixed)
                    ),
                ));
            }
        }
    }
    findings.missing = missing.into_iter().map(|(_, _, l)| l).collect();
    findings
}

#[test]
fn the_guide_lists_every_message_and_only_messages_of_the_source() {
    let scanner = scan();
    let listed = guide();
    assert!(
        !listed.is_empty(),
        "docs/troubleshooting.md lists no message (no ```vmtel block)"
    );
    let unused: Vec<&&str> = SINK_KINDS
        .iter()
        .filter(|k| !scanner.templates.iter().any(|t| t.sink == **k))
        .collect();
    assert!(
        unused.is_empty(),
        "no message found at these sink kinds: {unused:?}; the source no longer has that shape: update the rules in tests/docs_troubleshooting.rs"
    );
    if std::env::var_os("VMTEL_LIST_MESSAGES").is_some() {
        // For writing the guide: every message of the source, as the check sees it.
        for t in &scanner.templates {
            eprintln!(
                "{}:{}: {}: {}",
                t.file,
                t.line,
                t.sink,
                render(&t.pieces, &scanner.fixed)
            );
        }
    }
    let findings = check(&scanner, &listed);
    let report = findings.report();
    assert!(report.is_empty(), "\n{report}");
    eprintln!(
        "{} messages of the source ({} fixed texts) against {} listed messages",
        findings.messages,
        scanner.fixed.len(),
        listed.len()
    );
}

/// The check fails both ways: without a listed message, its texts are reported missing at
/// their place in the source; with a message the source does not have, its words are reported.
/// (Compared with the check of the guide as it is, so that this holds whatever that finds.)
#[test]
fn the_check_reports_a_removed_entry_and_an_invented_one() {
    let scanner = scan();
    let listed = guide();
    let base = check(&scanner, &listed);
    let Some((i, findings)) = (0..listed.len()).find_map(|i| {
        let mut fewer = listed.clone();
        fewer.remove(i);
        let f = check(&scanner, &fewer);
        (f.missing.len() > base.missing.len()).then_some((i, f))
    }) else {
        panic!("removing any one listed message goes unnoticed");
    };
    let new: Vec<&String> = findings
        .missing
        .iter()
        .filter(|l| !base.missing.contains(l))
        .collect();
    assert!(
        new.iter().all(|l| l.trim_start().starts_with("src/")),
        "each missing text is named with its file: {new:?}"
    );
    assert_eq!(findings.stale, base.stale);
    // Listing it again (anywhere) gives the same findings as before.
    let mut again = listed.clone();
    let removed = again.remove(i);
    again.push(removed);
    assert_eq!(check(&scanner, &again).missing, base.missing);

    let mut invented = listed.clone();
    invented.push(Listed {
        text: "the flux capacitor of <uri> is uncalibrated".into(),
        line: 0,
    });
    let f = check(&scanner, &invented);
    assert_eq!(f.stale.len(), base.stale.len() + 1, "{}", f.report());
    assert!(
        f.stale.iter().any(|l| l.contains("capacitor")),
        "{}",
        f.report()
    );
}
