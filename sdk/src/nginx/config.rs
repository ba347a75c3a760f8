//! nginx's configuration as nginx itself reads it, from `nginx -T`, and the
//! places it routes traffic to.
//!
//! The tokenizer is hand-written after `ngx_conf_read_token` in
//! `src/core/ngx_conf_file.c` rather than taken from the `nginx-lint-parser`
//! crate (0.24, checked for this): that crate builds for wasm32-wasip2 with
//! default features off, but it is a linter's lexer, not nginx's. It splits
//! `http://${up}:8000` into three arguments, `a\ b` into two and `($a` into
//! two, and it accepts `"a"b`, which nginx rejects. A proxy target read from
//! the wrong argument is exactly the bug this module is here to fix. It also
//! brings in a rowan syntax tree that we would not use. The rules below fit in
//! a few short functions.
//!
//! nginx's rules, kept here: whitespace separates tokens; `;` ends a
//! directive, `{` opens a block and `}` closes it; `#` at the start of a token
//! comments to the end of the line, but is plain text inside a token or a
//! quoted string; `"..."` and `'...'` quote, and a backslash escapes the next
//! character anywhere (`\"`, `\'` and `\\` drop the backslash, `\n`, `\r` and
//! `\t` become control characters, and other escapes are kept as written);
//! `${var}` stays one token; a closing quote must be followed by whitespace,
//! `;`, `{` or `)`.

use std::collections::BTreeMap;

/// One directive as nginx reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// The first token, e.g. `proxy_pass`.
    pub name: String,
    /// The other tokens, with quotes removed and escapes applied.
    pub args: Vec<String>,
    /// The directives between `{` and `}`, if the directive has a block.
    pub block: Option<Vec<Directive>>,
    /// The file the directive is written in, as `nginx -T` names it.
    pub file: String,
    /// The line of the directive's first token, counting from 1.
    pub line: u32,
}

/// The whole configuration, includes expanded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// The main file's top-level directives, with each `include` replaced by
    /// the directives of the files it names.
    pub directives: Vec<Directive>,
}

/// Where nginx may send a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// proxy_pass, fastcgi_pass, uwsgi_pass, grpc_pass, scgi_pass or memcached_pass.
    pub directive: String,
    /// The argument as written, e.g. `http://api:8000/app`.
    pub raw: String,
    /// The host, e.g. `api`, `[::1]` or `unix:/run/php.sock`; None when the
    /// host part holds a variable, so it is only known at run time.
    pub host: Option<String>,
    /// The explicit port, if any.
    pub port: Option<u16>,
    /// The `upstream` block the host names, if it names one.
    pub upstream: Option<String>,
    /// Where the directive is written.
    pub file: String,
    /// The directive's line.
    pub line: u32,
}

/// A `server` inside an `upstream` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// The host, e.g. `api`, or `unix:/path` for a socket.
    pub host: String,
    /// The explicit port, if any.
    pub port: Option<u16>,
    /// Where the `server` directive is written (often an included file).
    pub file: String,
    /// The directive's line.
    pub line: u32,
}

/// An `upstream` block, in `http` or `stream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The block's name, which targets refer to.
    pub name: String,
    /// Its `server` directives, in order.
    pub servers: Vec<Server>,
    /// Whether any server has the `resolve` parameter, so nginx resolves its
    /// name again while running instead of only at start and reload.
    pub resolve: bool,
    /// Where the block starts.
    pub file: String,
    /// The block's line.
    pub line: u32,
}

/// Everything that decides where nginx sends traffic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    /// Every `*_pass` directive, in config order.
    pub targets: Vec<Target>,
    /// Every `upstream` block, in config order.
    pub upstreams: Vec<Upstream>,
    /// The arguments of every `resolver` directive, in order.
    pub resolvers: Vec<String>,
}

/// Blocks and includes nested deeper than this are refused: real configs
/// nest a handful deep, and a limit keeps hostile input from exhausting the
/// stack while the tree is built, walked or dropped.
const MAX_DEPTH: usize = 100;

/// Expansion stops past this many directives: includes repeated inside
/// repeated includes grow exponentially, and real configs are far smaller.
const MAX_DIRECTIVES: usize = 200_000;

/// The directives that hand a request to another server.
const PASS_DIRECTIVES: [&str; 6] = [
    "proxy_pass",
    "fastcgi_pass",
    "uwsgi_pass",
    "grpc_pass",
    "scgi_pass",
    "memcached_pass",
];

/// The line `nginx -T` prints before each file, up to the path.
const DUMP_HEADER: &str = "# configuration file ";

// ---------------------------------------------------------------------------
// Tokenizer
// ---------------------------------------------------------------------------

/// What ended a run of tokens, as `ngx_conf_read_token` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Semicolon,
    Open,
    Close,
}

/// The tokens of one directive, or a lone `}`.
struct Event {
    args: Vec<String>,
    line: u32,
    end: End,
}

/// `ngx_conf_read_token`'s state, kept between calls so it can stop at
/// each `;`, `{` and `}`.
struct Lexer<'a> {
    file: &'a str,
    chars: std::str::Chars<'a>,
    line: u32,
    /// Inside a token (nginx's `!last_space`).
    in_token: bool,
    /// Just after a closing quote, which must be followed by a separator.
    need_space: bool,
    /// Inside a `#` comment.
    comment: bool,
    /// The previous character was a backslash.
    escaped: bool,
    /// The previous character was `$`, so `{` belongs to `${name}`.
    variable: bool,
    /// The quote character of the quoted token being read.
    quote: Option<char>,
    /// The current token as written, quotes excluded, escapes not applied.
    token: String,
    token_line: u32,
    args: Vec<String>,
    args_line: u32,
}

fn is_space(ch: char) -> bool {
    matches!(ch, ' ' | '\t' | '\r' | '\n')
}

impl<'a> Lexer<'a> {
    fn new(file: &'a str, text: &'a str) -> Self {
        Lexer {
            file,
            chars: text.chars(),
            line: 1,
            in_token: false,
            need_space: false,
            comment: false,
            escaped: false,
            variable: false,
            quote: None,
            token: String::new(),
            token_line: 1,
            args: Vec::new(),
            args_line: 1,
        }
    }

    fn next_char(&mut self) -> Option<char> {
        let ch = self.chars.next()?;
        if ch == '\n' {
            self.line = self.line.saturating_add(1);
        }
        Some(ch)
    }

    /// After the `{` of a `*_by_lua_block`: its Lua code, up to the brace
    /// that closes it. Braces count outside Lua's strings and comments.
    fn skip_lua_block(&mut self, line: u32) -> Result<(), String> {
        let mut depth = 1u32;
        while let Some(ch) = self.next_char() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                '"' | '\'' => self.skip_lua_string(ch),
                '[' => {
                    if let Some(level) = self.lua_long_open() {
                        self.skip_lua_long(level);
                    }
                }
                '-' if self.chars.clone().next() == Some('-') => {
                    self.next_char();
                    let long = match self.chars.clone().next() {
                        Some('[') => {
                            self.next_char();
                            self.lua_long_open()
                        }
                        _ => None,
                    };
                    match long {
                        Some(level) => self.skip_lua_long(level),
                        None => while self.next_char().is_some_and(|c| c != '\n') {},
                    }
                }
                _ => {}
            }
        }
        let what = "Lua block is never closed: unexpected end of file, expecting \"}\"";
        Err(self.error(line, what))
    }

    fn skip_lua_string(&mut self, quote: char) {
        while let Some(ch) = self.next_char() {
            match ch {
                '\\' => {
                    self.next_char();
                }
                c if c == quote || c == '\n' => return,
                _ => {}
            }
        }
    }

    /// After a `[`: the level of a Lua long bracket (`[[`, `[==[`), its
    /// opening consumed, or None (and nothing consumed) when it is not one.
    fn lua_long_open(&mut self) -> Option<usize> {
        let mut ahead = self.chars.clone();
        let mut level = 0;
        loop {
            match ahead.next()? {
                '=' => level += 1,
                '[' => break,
                _ => return None,
            }
        }
        for _ in 0..=level {
            self.next_char();
        }
        Some(level)
    }

    /// Up to the `]=…=]` that closes a long bracket of `level`.
    fn skip_lua_long(&mut self, level: usize) {
        while let Some(ch) = self.next_char() {
            if ch != ']' {
                continue;
            }
            let mut ahead = self.chars.clone();
            let equals = ahead.by_ref().take_while(|&c| c == '=').count();
            if equals == level && self.chars.clone().nth(level) == Some(']') {
                for _ in 0..=level {
                    self.next_char();
                }
                return;
            }
        }
    }

    fn error(&self, line: u32, what: &str) -> String {
        format!("{}:{line}: {what}", self.file)
    }

    /// The next directive's tokens, or None at a clean end of file.
    fn next_event(&mut self) -> Result<Option<Event>, String> {
        while let Some(ch) = self.chars.next() {
            if ch == '\n' {
                self.line = self.line.saturating_add(1);
                self.comment = false;
            }
            if self.comment {
                continue;
            }
            if let Some(end) = self.step(ch)? {
                return Ok(Some(self.take_event(end)));
            }
        }
        self.at_eof().map(|()| None)
    }

    fn step(&mut self, ch: char) -> Result<Option<End>, String> {
        if self.escaped {
            self.escaped = false;
            self.token.push(ch);
            return Ok(None);
        }
        if self.need_space {
            match ch {
                _ if is_space(ch) => {
                    self.need_space = false;
                    return Ok(None);
                }
                ';' => return Ok(Some(End::Semicolon)),
                '{' => return Ok(Some(End::Open)),
                // nginx lets `)` follow a quote, for `if ($a = "b")`.
                ')' => self.need_space = false,
                _ => {
                    let what = format!("unexpected \"{ch}\" after a quoted string");
                    return Err(self.error(self.line, &what));
                }
            }
        }
        if self.in_token {
            Ok(self.continue_token(ch))
        } else {
            self.start_token(ch)
        }
    }

    fn start_token(&mut self, ch: char) -> Result<Option<End>, String> {
        match ch {
            _ if is_space(ch) => Ok(None),
            ';' | '{' if self.args.is_empty() => {
                Err(self.error(self.line, &format!("unexpected \"{ch}\"")))
            }
            ';' => Ok(Some(End::Semicolon)),
            '{' => Ok(Some(End::Open)),
            '}' if !self.args.is_empty() => Err(self.error(self.line, "unexpected \"}\"")),
            '}' => Ok(Some(End::Close)),
            '#' => {
                self.comment = true;
                Ok(None)
            }
            _ => {
                self.open_token(ch);
                Ok(None)
            }
        }
    }

    fn open_token(&mut self, ch: char) {
        self.in_token = true;
        self.token.clear();
        self.token_line = self.line;
        if self.args.is_empty() {
            self.args_line = self.line;
        }
        match ch {
            '"' | '\'' => self.quote = Some(ch),
            '\\' => {
                self.escaped = true;
                self.token.push(ch);
            }
            '$' => {
                self.variable = true;
                self.token.push(ch);
            }
            _ => self.token.push(ch),
        }
    }

    fn continue_token(&mut self, ch: char) -> Option<End> {
        let after_dollar = std::mem::take(&mut self.variable);
        let ends = match self.quote {
            _ if ch == '{' && after_dollar => false,
            _ if ch == '\\' || ch == '$' => false,
            Some(quote) => ch == quote,
            None => is_space(ch) || ch == ';' || ch == '{',
        };
        if !ends {
            self.escaped = ch == '\\';
            // nginx keeps its flag after `${`, so `${{` is text too.
            self.variable = ch == '$' || (ch == '{' && after_dollar);
            self.token.push(ch);
            return None;
        }
        self.args.push(unescape(&self.token));
        self.in_token = false;
        if self.quote.take().is_some() {
            self.need_space = true;
            return None;
        }
        match ch {
            ';' => Some(End::Semicolon),
            '{' => Some(End::Open),
            _ => None,
        }
    }

    fn take_event(&mut self, end: End) -> Event {
        self.need_space = false;
        let args = std::mem::take(&mut self.args);
        let line = if args.is_empty() {
            self.line
        } else {
            self.args_line
        };
        Event { args, line, end }
    }

    fn at_eof(&self) -> Result<(), String> {
        if self.quote.is_some() {
            return Err(self.error(self.token_line, "unterminated quoted string"));
        }
        if !self.in_token && !self.need_space && self.args.is_empty() {
            return Ok(());
        }
        let name = self.args.first().unwrap_or(&self.token);
        let what = format!(
            "unexpected end of file: directive \"{name}\" is not terminated by \";\" or \"{{\""
        );
        Err(self.error(self.args_line, &what))
    }
}

/// A token's text with nginx's escapes applied: `\"`, `\'` and `\\` lose
/// the backslash, `\n`, `\r` and `\t` become control characters, and any
/// other backslash is kept.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(ch) = chars.next() {
        let escaped = match (ch, chars.peek()) {
            ('\\', Some(&next @ ('"' | '\'' | '\\'))) => Some(next),
            ('\\', Some('n')) => Some('\n'),
            ('\\', Some('r')) => Some('\r'),
            ('\\', Some('t')) => Some('\t'),
            _ => None,
        };
        match escaped {
            Some(unescaped) => {
                chars.next();
                out.push(unescaped);
            }
            None => out.push(ch),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

/// Parse one file's text into directives, without expanding `include`.
/// `path` is only used to name the file in directives and errors.
pub fn parse_file(path: &str, text: &str) -> Result<Vec<Directive>, String> {
    let mut lexer = Lexer::new(path, text);
    // The blocks opened and not yet closed, innermost last: a stack instead
    // of recursion, so nesting depth cannot overflow ours.
    let mut open: Vec<Directive> = Vec::new();
    let mut top = Vec::new();
    while let Some(event) = lexer.next_event()? {
        match event.end {
            End::Semicolon => attach(&mut open, &mut top, directive(path, event, None)),
            End::Open if open.len() >= MAX_DEPTH => {
                let what = format!("blocks nested more than {MAX_DEPTH} deep");
                return Err(lexer.error(event.line, &what));
            }
            // OpenResty's Lua blocks hold Lua, not nginx directives: read to
            // their closing brace as lua-nginx-module reads them, kept empty.
            End::Open if event.args[0].ends_with("_by_lua_block") => {
                lexer.skip_lua_block(event.line)?;
                attach(
                    &mut open,
                    &mut top,
                    directive(path, event, Some(Vec::new())),
                );
            }
            End::Open => open.push(directive(path, event, Some(Vec::new()))),
            End::Close => match open.pop() {
                Some(block) => attach(&mut open, &mut top, block),
                None => return Err(lexer.error(event.line, "unexpected \"}\"")),
            },
        }
    }
    match open.last() {
        Some(block) => Err(format!(
            "{}:{}: \"{}\" block is never closed: unexpected end of file, expecting \"}}\"",
            block.file, block.line, block.name
        )),
        None => Ok(top),
    }
}

fn directive(path: &str, event: Event, block: Option<Vec<Directive>>) -> Directive {
    let mut args = event.args.into_iter();
    Directive {
        name: args.next().unwrap_or_default(),
        args: args.collect(),
        block,
        file: path.to_owned(),
        line: event.line,
    }
}

/// Add a finished directive to the innermost open block, or the top level.
fn attach(open: &mut [Directive], top: &mut Vec<Directive>, done: Directive) {
    match open.last_mut().and_then(|parent| parent.block.as_mut()) {
        Some(block) => block.push(done),
        None => top.push(done),
    }
}

// ---------------------------------------------------------------------------
// `nginx -T` and includes
// ---------------------------------------------------------------------------

/// Parse `nginx -T`'s stdout: split it into the files it prints, parse the
/// main (first) file and expand every `include` in place, as nginx does.
pub fn parse_dump(stdout: &str) -> Result<Config, String> {
    let files = rejoin_false_headers(stdout, split_dump(stdout)?);
    let Some(&(main, _)) = files.first() else {
        return Err("nginx -T output holds no \"# configuration file <path>:\" line".into());
    };
    let mut dump = Dump {
        prefix: conf_prefix(main),
        // Keep the first copy: nginx prints each file once, and only the
        // first could be what it read.
        files: files.iter().rev().copied().collect(),
        parsed: BTreeMap::new(),
        chain: vec![main.to_owned()],
        budget: MAX_DIRECTIVES,
    };
    let top = dump.parsed_file(main)?;
    let directives = dump.expand(top, 0)?;
    Ok(Config { directives })
}

/// The files in `nginx -T`'s stdout, as (path, text), in printed order.
fn split_dump(stdout: &str) -> Result<Vec<(&str, &str)>, String> {
    let mut files = Vec::new();
    let mut current: Option<(&str, usize)> = None;
    let mut offset = 0;
    for line in stdout.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let Some(path) = header_path(line) else {
            continue;
        };
        match current {
            Some((prev, from)) => files.push((prev, stdout.get(from..start).unwrap_or(""))),
            None if !stdout.get(..start).unwrap_or("").trim().is_empty() => {
                return Err(
                    "nginx -T output: text before the first \"# configuration file\" line \
                     (was stderr mixed in?)"
                        .into(),
                );
            }
            None => {}
        }
        current = Some((path, offset));
    }
    if let Some((path, from)) = current {
        files.push((path, stdout.get(from..).unwrap_or("")));
    }
    Ok(files)
}

/// A line of a file that reads like `nginx -T`'s header (a comment such as
/// `# configuration file /etc/nginx/x.conf:`) splits that file in two, and
/// the second part, never included, would be dropped without a word. nginx
/// prints the main file and the files an `include` names, so a part that no
/// `include` anywhere in the dump names is the rest of the file before it,
/// and is joined back to it, its header line a comment again.
fn rejoin_false_headers<'a>(
    stdout: &'a str,
    files: Vec<(&'a str, &'a str)>,
) -> Vec<(&'a str, &'a str)> {
    let Some(&(main, _)) = files.first() else {
        return files;
    };
    let prefix = conf_prefix(main);
    let patterns = include_patterns(&files, prefix);
    let named = |path: &str| patterns.iter().any(|p| names(p, path));
    let offset = |text: &str| text.as_ptr() as usize - stdout.as_ptr() as usize;
    let mut out: Vec<(&str, &str)> = Vec::with_capacity(files.len());
    for (path, text) in files {
        match out.last_mut() {
            Some(prev) if !named(path) => {
                let (start, end) = (offset(prev.1), offset(text) + text.len());
                prev.1 = stdout.get(start..end).unwrap_or(prev.1);
            }
            _ => out.push((path, text)),
        }
    }
    out
}

/// Every `include` argument in the dumped files, read token by token (a
/// file that does not lex stops where it fails), made absolute as nginx
/// makes it.
fn include_patterns(files: &[(&str, &str)], prefix: &str) -> Vec<String> {
    let mut patterns = Vec::new();
    for (path, text) in files {
        let mut lexer = Lexer::new(path, text);
        while let Ok(Some(event)) = lexer.next_event() {
            if let [name, pattern] = event.args.as_slice()
                && name == "include"
                && event.end == End::Semicolon
            {
                patterns.push(absolute(pattern, prefix));
            }
        }
    }
    patterns
}

/// The path in a `# configuration file <path>:` line.
fn header_path(line: &str) -> Option<&str> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    line.strip_prefix(DUMP_HEADER)?.strip_suffix(':')
}

/// The dumped files and what expanding them needs.
struct Dump<'a> {
    /// nginx's conf prefix: the main file's directory, with its `/`.
    prefix: &'a str,
    /// Path to text; a sorted map, because glob matches come out sorted.
    files: BTreeMap<&'a str, &'a str>,
    /// Each file parsed once, however often it is included.
    parsed: BTreeMap<&'a str, Vec<Directive>>,
    /// The files being expanded, outermost first, to catch include cycles.
    chain: Vec<String>,
    /// How many more directives expansion may produce.
    budget: usize,
}

impl<'a> Dump<'a> {
    fn parsed_file(&mut self, path: &'a str) -> Result<Vec<Directive>, String> {
        if let Some(done) = self.parsed.get(path) {
            return Ok(done.clone());
        }
        let text = self.files.get(path).copied().unwrap_or("");
        let directives = parse_file(path, text)?;
        self.parsed.insert(path, directives.clone());
        Ok(directives)
    }

    /// `directives` with includes replaced by what they include; `depth`
    /// counts the blocks and includes around them.
    fn expand(
        &mut self,
        directives: Vec<Directive>,
        depth: usize,
    ) -> Result<Vec<Directive>, String> {
        let mut out = Vec::with_capacity(directives.len());
        for mut d in directives {
            if depth >= MAX_DEPTH {
                let what = format!("blocks and includes nested more than {MAX_DEPTH} deep");
                return Err(format!("{}:{}: {what}", d.file, d.line));
            }
            // Includes count too: they are the work a hostile dump multiplies.
            self.spend(&d)?;
            if d.name == "include" && d.block.is_none() {
                out.extend(self.include(&d, depth)?);
                continue;
            }
            if let Some(block) = d.block.take() {
                d.block = Some(self.expand(block, depth + 1)?);
            }
            out.push(d);
        }
        Ok(out)
    }

    fn spend(&mut self, d: &Directive) -> Result<(), String> {
        self.budget = self.budget.checked_sub(1).ok_or_else(|| {
            let what = format!("includes expand to more than {MAX_DIRECTIVES} directives");
            format!("{}:{}: {what}", d.file, d.line)
        })?;
        Ok(())
    }

    /// The directives of every dumped file one `include` names.
    fn include(&mut self, d: &Directive, depth: usize) -> Result<Vec<Directive>, String> {
        let [pattern] = d.args.as_slice() else {
            let what = "invalid number of arguments in \"include\" directive";
            return Err(format!("{}:{}: {what}", d.file, d.line));
        };
        let pattern = absolute(pattern, self.prefix);
        let mut out = Vec::new();
        for path in self.matching(&pattern) {
            if self.chain.iter().any(|open| open == path) {
                let cycle = format!("{} -> {path}", self.chain.join(" -> "));
                return Err(format!("{}:{}: include cycle: {cycle}", d.file, d.line));
            }
            let directives = self.parsed_file(path)?;
            self.chain.push(path.to_owned());
            let expanded = self.expand(directives, depth + 1);
            self.chain.pop();
            out.extend(expanded?);
        }
        Ok(out)
    }

    /// The dumped paths an include names, sorted as glob(3) sorts them.
    /// A pattern without `*`, `?` or `[` names one file, like in nginx.
    fn matching(&self, pattern: &str) -> Vec<&'a str> {
        if !is_glob(pattern) {
            let found = self.files.get_key_value(pattern);
            return found.map(|(path, _)| *path).into_iter().collect();
        }
        let keys = self.files.keys().copied();
        keys.filter(|path| glob_match(pattern, path)).collect()
    }
}

/// nginx's conf prefix: the main file's directory, with its `/`.
fn conf_prefix(main: &str) -> &str {
    main.rfind('/').and_then(|i| main.get(..=i)).unwrap_or("")
}

/// An `include` argument as nginx opens it: relative to the conf prefix.
fn absolute(pattern: &str, prefix: &str) -> String {
    match pattern.starts_with('/') {
        true => pattern.to_owned(),
        false => format!("{prefix}{pattern}"),
    }
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// Whether an absolute `include` pattern names `path`.
fn names(pattern: &str, path: &str) -> bool {
    match is_glob(pattern) {
        true => glob_match(pattern, path),
        false => pattern == path,
    }
}

/// One element of a glob pattern.
enum Glob {
    Char(char),
    AnyChar,
    AnyRun,
    /// `[...]`: inclusive ranges, and whether the class is negated.
    Class(Vec<(char, char)>, bool),
}

/// glob(3) as nginx calls it (no flags): `*` and `?` stay within one path
/// component and do not match a leading `.`.
fn glob_match(pattern: &str, path: &str) -> bool {
    let patterns: Vec<&str> = pattern.split('/').collect();
    let parts: Vec<&str> = path.split('/').collect();
    patterns.len() == parts.len()
        && patterns
            .iter()
            .zip(&parts)
            .all(|(p, s)| component_match(p, s))
}

fn component_match(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let pattern = compile_glob(pattern);
    let name: Vec<char> = name.chars().collect();
    wildcard_match(&pattern, &name)
}

fn compile_glob(pattern: &str) -> Vec<Glob> {
    let mut out = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(ch) = chars.next() {
        out.push(match ch {
            '*' => Glob::AnyRun,
            '?' => Glob::AnyChar,
            '\\' => Glob::Char(chars.next().unwrap_or('\\')),
            '[' => compile_class(&mut chars).unwrap_or(Glob::Char('[')),
            _ => Glob::Char(ch),
        });
    }
    out
}

/// A `[...]` class after its `[`; None, consuming nothing, when it is not
/// closed, because then glob(3) takes the `[` literally.
fn compile_class(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<Glob> {
    let mut ahead = chars.clone();
    let negated = matches!(ahead.peek(), Some('!' | '^'));
    if negated {
        ahead.next();
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let ch = match ahead.next()? {
            ']' if !first => break,
            '\\' => ahead.next()?,
            ch => ch,
        };
        first = false;
        let mut probe = ahead.clone();
        match (probe.next(), probe.next()) {
            (Some('-'), Some(hi)) if hi != ']' => {
                ranges.push((ch, hi));
                ahead = probe;
            }
            _ => ranges.push((ch, ch)),
        }
    }
    *chars = ahead;
    Some(Glob::Class(ranges, negated))
}

impl Glob {
    fn matches(&self, ch: char) -> bool {
        match self {
            Glob::Char(c) => *c == ch,
            Glob::AnyChar | Glob::AnyRun => true,
            Glob::Class(ranges, negated) => {
                ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&ch)) != *negated
            }
        }
    }
}

/// Wildcard matching with one backtrack point: O(pattern × name), so a
/// hostile pattern cannot make it exponential.
fn wildcard_match(pattern: &[Glob], name: &[char]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while let Some(&ch) = name.get(n) {
        match pattern.get(p) {
            Some(Glob::AnyRun) => {
                star = Some((p, n));
                p += 1;
            }
            Some(glob) if glob.matches(ch) => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    star = Some((star_p, star_n + 1));
                    p = star_p + 1;
                    n = star_n + 1;
                }
                None => return false,
            },
        }
    }
    pattern.iter().skip(p).all(|g| matches!(g, Glob::AnyRun))
}

// ---------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------

/// Where `config` may send traffic: every `*_pass` target, every `upstream`
/// block and every `resolver`, anywhere in the tree.
pub fn routes(config: &Config) -> Routes {
    let mut found = Found::default();
    // Each level remembers its top-level block (`http`, `stream`): they
    // name upstreams separately.
    let mut stack = vec![(config.directives.iter(), "")];
    while let Some((level, context)) = stack.last_mut() {
        let context = *context;
        let Some(d) = level.next() else {
            stack.pop();
            continue;
        };
        found.visit(d, context);
        if let Some(block) = &d.block {
            let inner = if stack.len() == 1 {
                d.name.as_str()
            } else {
                context
            };
            stack.push((block.iter(), inner));
        }
    }
    found.finish()
}

/// What the walk collected, each item with its top-level block.
#[derive(Default)]
struct Found<'a> {
    targets: Vec<(Target, &'a str)>,
    upstreams: Vec<(Upstream, &'a str)>,
    resolvers: Vec<String>,
}

impl<'a> Found<'a> {
    fn visit(&mut self, d: &Directive, context: &'a str) {
        match d.name.as_str() {
            name if PASS_DIRECTIVES.contains(&name) => {
                if let Some(target) = target(d) {
                    self.targets.push((target, context));
                }
            }
            "upstream" => {
                if let Some(upstream) = upstream(d) {
                    self.upstreams.push((upstream, context));
                }
            }
            "resolver" => self.resolvers.extend(d.args.iter().cloned()),
            _ => {}
        }
    }

    /// Link targets to the upstreams they name, which may come later in the
    /// config. nginx matches names case-insensitively, and only without a port.
    fn finish(self) -> Routes {
        let upstreams = &self.upstreams;
        let names = |target: &Target, context: &str| {
            let host = target.host.as_deref().filter(|_| target.port.is_none())?;
            let (named, _) = upstreams
                .iter()
                .find(|(up, ctx)| *ctx == context && up.name.eq_ignore_ascii_case(host))?;
            Some(named.name.clone())
        };
        let targets = self.targets.iter().map(|(target, context)| Target {
            upstream: names(target, context),
            ..target.clone()
        });
        Routes {
            targets: targets.collect(),
            upstreams: self.upstreams.iter().map(|(up, _)| up.clone()).collect(),
            resolvers: self.resolvers,
        }
    }
}

fn target(d: &Directive) -> Option<Target> {
    let raw = d.args.first()?;
    let (host, port) = parse_address(raw);
    Some(Target {
        directive: d.name.clone(),
        raw: raw.clone(),
        host,
        port,
        upstream: None,
        file: d.file.clone(),
        line: d.line,
    })
}

fn upstream(d: &Directive) -> Option<Upstream> {
    let name = d.args.first()?;
    let block = d.block.as_deref()?;
    let servers: Vec<&Directive> = block.iter().filter(|s| s.name == "server").collect();
    let resolve = servers
        .iter()
        .any(|s| s.args.iter().any(|a| a == "resolve"));
    let servers = servers.iter().filter_map(|s| {
        let (host, port) = parse_address(s.args.first()?);
        Some(Server {
            host: host?,
            port,
            file: s.file.clone(),
            line: s.line,
        })
    });
    Some(Upstream {
        name: name.clone(),
        servers: servers.collect(),
        resolve,
        file: d.file.clone(),
        line: d.line,
    })
}

/// The host and port of a pass target or upstream server address: the
/// scheme is dropped, `unix:/path` is a socket, `[...]` an IPv6 address kept
/// with its brackets as nginx keeps it. A `$` in the host means None.
fn parse_address(address: &str) -> (Option<String>, Option<u16>) {
    let rest = address.split_once("://").map_or(address, |(_, rest)| rest);
    if let Some(path) = strip_prefix_ignore_case(rest, "unix:") {
        // `http://unix:/run/app.sock:/uri`: the socket path ends at `:`.
        let path = path.split(':').next().unwrap_or(path);
        let host = Some(format!("unix:{path}")).filter(|_| !path.contains('$'));
        return (host, None);
    }
    let (host, after) = split_host(rest);
    let host = Some(host.to_owned()).filter(|_| !host.contains('$'));
    (host, explicit_port(after))
}

fn strip_prefix_ignore_case<'s>(text: &'s str, prefix: &str) -> Option<&'s str> {
    let (head, tail) = text.split_at_checked(prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then_some(tail)
}

/// The host and what follows it (`:port/uri`, `/uri` or nothing).
fn split_host(rest: &str) -> (&str, &str) {
    let end = match rest.starts_with('[') {
        true => rest.find(']').map(|i| i + 1),
        false => rest.find([':', '/', '?']),
    };
    rest.split_at_checked(end.unwrap_or(rest.len()))
        .unwrap_or((rest, ""))
}

fn explicit_port(after_host: &str) -> Option<u16> {
    let port = after_host.strip_prefix(':')?;
    port.split(['/', '?']).next()?.parse().ok()
}

impl Routes {
    /// Every concrete host nginx may connect to: hosts of targets that do not
    /// name an upstream, plus every upstream server host. Deduplicated
    /// (case-insensitively, first spelling kept); targets first, then
    /// upstream servers, each in config order.
    pub fn hosts(&self) -> Vec<String> {
        let direct = self.targets.iter().filter(|t| t.upstream.is_none());
        let direct = direct.filter_map(|t| t.host.as_deref());
        let servers = self.upstreams.iter().flat_map(|u| &u.servers);
        let mut hosts: Vec<String> = Vec::new();
        for host in direct.chain(servers.map(|s| s.host.as_str())) {
            if !host.is_empty() && !hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
                hosts.push(host.to_owned());
            }
        }
        hosts
    }

    /// True when some target's host is a variable: nginx may reach any name
    /// at run time.
    pub fn has_variable_targets(&self) -> bool {
        self.targets.iter().any(|t| t.host.is_none())
    }

    /// Whether nginx may reach any of `names` (e.g. a compose service name
    /// and its network aliases): a concrete host equal to one
    /// (case-insensitive), or any variable target.
    pub fn may_reach(&self, names: &[String]) -> bool {
        if self.has_variable_targets() {
            return true;
        }
        let hosts = self.hosts();
        hosts
            .iter()
            .any(|host| names.iter().any(|name| host.eq_ignore_ascii_case(name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `nginx -T`'s stdout for these files, main file first.
    fn dump(files: &[(&str, &str)]) -> String {
        let file = |(path, text): &(&str, &str)| format!("{DUMP_HEADER}{path}:\n{text}\n");
        files.iter().map(file).collect()
    }

    /// A compact picture of a tree: `name[arg|arg]@line{...}`.
    fn outline(directives: &[Directive]) -> String {
        let one = |d: &Directive| {
            let block = d.block.as_deref().map(|b| format!("{{{}}}", outline(b)));
            let block = block.unwrap_or_default();
            format!("{}[{}]@{}{block}", d.name, d.args.join("|"), d.line)
        };
        directives.iter().map(one).collect::<Vec<_>>().join(" ")
    }

    fn routes_of(files: &[(&str, &str)]) -> Routes {
        routes(&parse_dump(&dump(files)).expect("test config parses"))
    }

    fn routes_of_main(text: &str) -> Routes {
        routes_of(&[("/etc/nginx/nginx.conf", text)])
    }

    #[test]
    fn tokenizes_like_nginx() {
        let cases = [
            (
                "one-line location",
                "location / { proxy_pass http://api:8000/app; }",
                "location[/]@1{proxy_pass[http://api:8000/app]@1}",
            ),
            (
                "quotes with spaces and escaped quotes",
                r#"add_header X-A "a \"b\" c" 'd \'e\' f';"#,
                r#"add_header[X-A|a "b" c|d 'e' f]@1"#,
            ),
            (
                "escapes",
                r#"return 200 "x\ny\t\\z\r" a\qb g\ h;"#,
                "return[200|x\ny\t\\z\r|a\\qb|g\\ h]@1",
            ),
            (
                "# inside quotes is text",
                "add_header X \"#not a comment\" '#nor this';",
                "add_header[X|#not a comment|#nor this]@1",
            ),
            (
                "# after a token start is text, at a token start a comment",
                "root /srv/a#b; # gone; really\nindex i.html;#x\n",
                "root[/srv/a#b]@1 index[i.html]@2",
            ),
            (
                "${var} stays one token",
                "set $x ${a}b; proxy_pass http://${up}:8000; x ${{a};",
                "set[$x|${a}b]@1 proxy_pass[http://${up}:8000]@1 x[${{a}]@1",
            ),
            (
                "a quote may be followed by )",
                "if ($a = \"x\") { return 403; }",
                "if[($a|=|x|)]@1{return[403]@1}",
            ),
            (
                "} inside a token is text, and a token in quotes may be empty",
                "x a}b \"\";",
                "x[a}b|]@1",
            ),
            (
                "lines counted across blocks, comments and CRLF",
                "# c\r\nhttp {\r\n  server\r\n  {\r\n    listen\r\n 80;\r\n  }\r\n}\r\n",
                "http[]@2{server[]@3{listen[80]@5}}",
            ),
            (
                "a quoted string spanning lines",
                "a \"1\n2\"\nb;",
                "a[1\n2|b]@1",
            ),
            ("empty file", "  # nothing\n\n", ""),
        ];
        for (what, text, want) in cases {
            let got = parse_file("t.conf", text).map(|d| outline(&d));
            assert_eq!(got.as_deref(), Ok(want), "{what}");
        }
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let deep = "a {".repeat(MAX_DEPTH + 1);
        let cases = [
            (
                "unbalanced {",
                "http {\n  server {\n  }\n",
                "t.conf:1: \"http\" block is never closed",
            ),
            ("unbalanced }", "a;\n}\n", "t.conf:2: unexpected \"}\""),
            (
                "} ends a directive",
                "listen 80 }",
                "t.conf:1: unexpected \"}\"",
            ),
            (
                "unterminated \"",
                "a;\nx \"abc;\n",
                "t.conf:2: unterminated quoted string",
            ),
            (
                "unterminated '",
                "x 'abc\n\n",
                "t.conf:1: unterminated quoted string",
            ),
            (
                "EOF inside a directive",
                "a;\nlisten\n80",
                "t.conf:2: unexpected end of file",
            ),
            ("; with no directive", "a;\n;", "t.conf:2: unexpected \";\""),
            (
                "{ with no directive",
                "{ a; }",
                "t.conf:1: unexpected \"{\"",
            ),
            (
                "text after a quote",
                "x \"a\"b;",
                "t.conf:1: unexpected \"b\" after a quoted",
            ),
            (
                "nesting too deep",
                deep.as_str(),
                "t.conf:1: blocks nested more than",
            ),
        ];
        for (what, text, want) in cases {
            let err = parse_file("t.conf", text).expect_err(what);
            assert!(err.starts_with(want), "{what}: {err}");
        }
    }

    /// (what is tested, the dumped files, the expected outline).
    type IncludeCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);

    #[test]
    fn expands_includes_from_the_dump() {
        let main = "/etc/nginx/nginx.conf";
        let cases: [IncludeCase; 5] = [
            (
                "absolute include printed later, expanded in place",
                vec![
                    (
                        main,
                        "http {\n  upstream u {\n    include /etc/nginx/u.conf;\n  }\n}",
                    ),
                    ("/etc/nginx/u.conf", "# pinned\nserver api:8000;"),
                ],
                "http[]@1{upstream[u]@2{server[api:8000]@2}}",
            ),
            (
                "relative glob, sorted, no hidden files, no subdirectories",
                vec![
                    (main, "a;\ninclude conf.d/*.conf;\nz;"),
                    ("/etc/nginx/conf.d/b.conf", "b;"),
                    ("/etc/nginx/conf.d/a.conf", "a2;"),
                ],
                "a[]@1 a2[]@1 b[]@1 z[]@3",
            ),
            (
                "? and [...] globs",
                vec![
                    (main, "include /etc/nginx/s?/[a-c!].conf;"),
                    ("/etc/nginx/s1/b.conf", "b;"),
                    ("/etc/nginx/s1/!.conf", "bang;"),
                ],
                "bang[]@1 b[]@1",
            ),
            (
                "an include matching nothing expands to nothing",
                vec![(
                    main,
                    "include /etc/nginx/none/*.conf; include missing.conf; a;",
                )],
                "a[]@1",
            ),
            (
                "one file included twice is not a cycle",
                vec![
                    (
                        main,
                        "server { include snippets/ssl.conf; }\nserver { include snippets/ssl.conf; }",
                    ),
                    ("/etc/nginx/snippets/ssl.conf", "ssl on;"),
                ],
                "server[]@1{ssl[on]@1} server[]@2{ssl[on]@1}",
            ),
        ];
        for (what, files, want) in cases {
            let config = parse_dump(&dump(&files)).expect(what);
            assert_eq!(outline(&config.directives), want, "{what}");
        }
    }

    #[test]
    fn globs_match_as_nginxs_glob_does() {
        let cases = [
            ("/etc/nginx/conf.d/*.conf", "/etc/nginx/conf.d/a.conf", true),
            (
                "/etc/nginx/conf.d/*.conf",
                "/etc/nginx/conf.d/.hidden.conf",
                false,
            ),
            (
                "/etc/nginx/conf.d/*.conf",
                "/etc/nginx/conf.d/sub/c.conf",
                false,
            ),
            (
                "/etc/nginx/conf.d/*.conf",
                "/etc/nginx/conf.d/b.conf.bak",
                false,
            ),
            ("/etc/nginx/s?/[a-c!].conf", "/etc/nginx/s1/!.conf", true),
            ("/etc/nginx/s?/[a-c!].conf", "/etc/nginx/s1/d.conf", false),
            ("/etc/nginx/s?/[a-c!].conf", "/etc/nginx/s22/a.conf", false),
        ];
        for (pattern, path, want) in cases {
            assert_eq!(glob_match(pattern, path), want, "{pattern} {path}");
        }
    }

    /// A comment that reads like `nginx -T`'s header, as a user may write
    /// one (or paste a dump into a file): the rest of the file is still the
    /// file, its routes are kept, and its lines keep their numbers.
    #[test]
    fn a_comment_like_the_dump_header_is_part_of_its_file() {
        let files = [
            (
                "/etc/nginx/nginx.conf",
                "http {\n  include conf.d/*.conf;\n}",
            ),
            (
                "/etc/nginx/conf.d/app.conf",
                "server {\n# configuration file /etc/nginx/old/app.conf:\n  location /api/ { proxy_pass http://api:8000; }\n}",
            ),
            ("/etc/nginx/conf.d/b.conf", "server { listen 81; }"),
        ];
        let config = parse_dump(&dump(&files)).expect("parses");
        assert_eq!(
            outline(&config.directives),
            "http[]@1{server[]@1{location[/api/]@3{proxy_pass[http://api:8000]@3}} server[]@1{listen[81]@1}}"
        );
        let server = &config.directives[0].block.as_ref().unwrap()[0];
        assert_eq!(server.file, "/etc/nginx/conf.d/app.conf");
    }

    /// OpenResty: the body of a `*_by_lua_block` is Lua, braces in its
    /// strings, long strings and comments included.
    #[test]
    fn lua_blocks_are_read_to_their_closing_brace() {
        let lua = "location /api/ {\n  access_by_lua_block {\n    local t = { a = \"}\", b = '{' }\n    -- a comment }\n    local s = [==[ ]] } ]==]\n    --[[ } ]] if t then ngx.say(s) end\n  }\n  proxy_pass http://api:8000;\n}\nserver_tokens off;";
        let config = parse_dump(&dump(&[("/etc/nginx/nginx.conf", lua)])).expect("parses");
        assert_eq!(
            outline(&config.directives),
            "location[/api/]@1{access_by_lua_block[]@2{} proxy_pass[http://api:8000]@8} server_tokens[off]@10"
        );
        let open = "content_by_lua_block {\n  ngx.say('}')\n";
        let err = parse_dump(&dump(&[("/etc/nginx/nginx.conf", open)])).expect_err("unclosed");
        assert!(
            err.contains("nginx.conf:1: Lua block is never closed"),
            "{err}"
        );
    }

    #[test]
    fn included_directives_keep_their_file() {
        let files = [
            ("/etc/nginx/nginx.conf", "include /etc/nginx/x.conf;"),
            ("/etc/nginx/x.conf", "\n\nlisten 80;"),
        ];
        let config = parse_dump(&dump(&files)).expect("parses");
        let d = config.directives.first().expect("one directive");
        assert_eq!((d.file.as_str(), d.line), ("/etc/nginx/x.conf", 3));
    }

    #[test]
    fn dump_errors_name_file_and_line() {
        let main = "/etc/nginx/nginx.conf";
        let cases: [(&str, String, &str); 6] = [
            (
                "include cycle",
                dump(&[
                    (main, "a;\ninclude a.conf;"),
                    ("/etc/nginx/a.conf", "\ninclude b.conf;"),
                    ("/etc/nginx/b.conf", "include /etc/nginx/a.conf;"),
                ]),
                "/etc/nginx/b.conf:1: include cycle: /etc/nginx/nginx.conf -> /etc/nginx/a.conf -> /etc/nginx/b.conf -> /etc/nginx/a.conf",
            ),
            (
                "main file includes itself",
                dump(&[(main, "include nginx.conf;")]),
                "/etc/nginx/nginx.conf:1: include cycle",
            ),
            (
                "syntax error in an included file",
                dump(&[(main, "include x.conf;"), ("/etc/nginx/x.conf", "a;\nb {")]),
                "/etc/nginx/x.conf:2: \"b\" block is never closed",
            ),
            (
                "include with two arguments",
                dump(&[(main, "\ninclude a b;")]),
                "/etc/nginx/nginx.conf:2: invalid number of arguments",
            ),
            (
                "not nginx -T output",
                "worker_processes 1;\n".to_owned(),
                "nginx -T output holds no",
            ),
            (
                "stderr mixed in",
                format!("nginx: syntax is ok\n{}", dump(&[(main, "a;")])),
                "nginx -T output: text before",
            ),
        ];
        for (what, stdout, want) in cases {
            let err = parse_dump(&stdout).expect_err(what);
            assert!(err.starts_with(want), "{what}: {err}");
        }
    }

    #[test]
    fn exponential_includes_are_refused() {
        let mut files = vec![("/etc/nginx/nginx.conf".to_owned(), "include f0;".to_owned())];
        for i in 0..40 {
            let text = format!("include f{0}; include f{0};", i + 1);
            files.push((format!("/etc/nginx/f{i}"), text));
        }
        files.push(("/etc/nginx/f40".to_owned(), "a;".to_owned()));
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        let err = parse_dump(&dump(&files)).expect_err("too big");
        assert!(err.contains("more than"), "{err}");
    }

    /// (directive, raw, host, port) of each target.
    type Want<'a> = Vec<(
        &'a str,
        &'a str,
        Option<&'a str>,
        Option<u16>,
        Option<&'a str>,
    )>;

    #[test]
    fn finds_targets() {
        let cases: [(&str, &str, Want); 12] = [
            (
                "one-line location",
                "http { server { location / { proxy_pass http://api:8000/app; } } }",
                vec![(
                    "proxy_pass",
                    "http://api:8000/app",
                    Some("api"),
                    Some(8000),
                    None,
                )],
            ),
            (
                "variable host",
                "server { set $up api; location / { proxy_pass http://$up:8000; } }",
                vec![("proxy_pass", "http://$up:8000", None, Some(8000), None)],
            ),
            (
                "${var} host",
                "proxy_pass http://${up};",
                vec![("proxy_pass", "http://${up}", None, None, None)],
            ),
            (
                "variable scheme, concrete host",
                "proxy_pass $scheme://web/x;",
                vec![("proxy_pass", "$scheme://web/x", Some("web"), None, None)],
            ),
            (
                "fastcgi unix socket",
                "location ~ \\.php$ { fastcgi_pass unix:/run/php/php-fpm.sock; }",
                vec![(
                    "fastcgi_pass",
                    "unix:/run/php/php-fpm.sock",
                    Some("unix:/run/php/php-fpm.sock"),
                    None,
                    None,
                )],
            ),
            (
                "proxy_pass to a unix socket with a URI",
                "proxy_pass http://unix:/tmp/app.sock:/api/;",
                vec![(
                    "proxy_pass",
                    "http://unix:/tmp/app.sock:/api/",
                    Some("unix:/tmp/app.sock"),
                    None,
                    None,
                )],
            ),
            (
                "grpc and grpcs",
                "grpc_pass grpc://grpc-svc:50051; grpc_pass grpcs://secure;",
                vec![
                    (
                        "grpc_pass",
                        "grpc://grpc-svc:50051",
                        Some("grpc-svc"),
                        Some(50051),
                        None,
                    ),
                    ("grpc_pass", "grpcs://secure", Some("secure"), None, None),
                ],
            ),
            (
                "IPv6",
                "proxy_pass http://[::1]:9000/x; uwsgi_pass [fe80::1];",
                vec![
                    (
                        "proxy_pass",
                        "http://[::1]:9000/x",
                        Some("[::1]"),
                        Some(9000),
                        None,
                    ),
                    ("uwsgi_pass", "[fe80::1]", Some("[fe80::1]"), None, None),
                ],
            ),
            (
                "schemeless passes",
                "uwsgi_pass app:3031; scgi_pass 10.0.0.2:4000; memcached_pass cache:11211;",
                vec![
                    ("uwsgi_pass", "app:3031", Some("app"), Some(3031), None),
                    (
                        "scgi_pass",
                        "10.0.0.2:4000",
                        Some("10.0.0.2"),
                        Some(4000),
                        None,
                    ),
                    (
                        "memcached_pass",
                        "cache:11211",
                        Some("cache"),
                        Some(11211),
                        None,
                    ),
                ],
            ),
            (
                "named upstream, declared after use, case-insensitive, not with a port",
                "http { server { if ($x) { proxy_pass http://API_upstream; } proxy_pass http://api_upstream:80; }\n upstream api_upstream { server api:8000; } }",
                vec![
                    (
                        "proxy_pass",
                        "http://API_upstream",
                        Some("API_upstream"),
                        None,
                        Some("api_upstream"),
                    ),
                    (
                        "proxy_pass",
                        "http://api_upstream:80",
                        Some("api_upstream"),
                        Some(80),
                        None,
                    ),
                ],
            ),
            (
                "stream upstreams name stream targets only",
                "http { server { proxy_pass http://db; } }\nstream { upstream db { server db1:5432; } server { proxy_pass db; } }",
                vec![
                    ("proxy_pass", "http://db", Some("db"), None, None),
                    ("proxy_pass", "db", Some("db"), None, Some("db")),
                ],
            ),
            (
                "bad port is no port; bare directive ignored",
                "proxy_pass http://api:99999; proxy_pass;",
                vec![("proxy_pass", "http://api:99999", Some("api"), None, None)],
            ),
        ];
        for (what, text, want) in cases {
            let routes = routes_of_main(text);
            let got: Want = routes
                .targets
                .iter()
                .map(|t| {
                    (
                        t.directive.as_str(),
                        t.raw.as_str(),
                        t.host.as_deref(),
                        t.port,
                        t.upstream.as_deref(),
                    )
                })
                .collect();
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn upstream_servers_report_the_included_file() {
        let routes = routes_of(&[
            (
                "/etc/nginx/nginx.conf",
                "http {\n  upstream api_upstream {\n    include upstreams/api.conf;\n    keepalive 8;\n  }\n}\n",
            ),
            (
                "/etc/nginx/upstreams/api.conf",
                "# pinned during a deploy\nserver api:8000 max_fails=2;\nserver unix:/run/api.sock backup;\nserver web resolve;\n",
            ),
        ]);
        let [up] = routes.upstreams.as_slice() else {
            panic!("one upstream: {routes:?}");
        };
        assert_eq!(
            (up.name.as_str(), up.file.as_str(), up.line, up.resolve),
            ("api_upstream", "/etc/nginx/nginx.conf", 2, true)
        );
        let servers: Vec<_> = up
            .servers
            .iter()
            .map(|s| (s.host.as_str(), s.port, s.file.as_str(), s.line))
            .collect();
        let file = "/etc/nginx/upstreams/api.conf";
        let want = [
            ("api", Some(8000), file, 2),
            ("unix:/run/api.sock", None, file, 3),
            ("web", None, file, 4),
        ];
        assert_eq!(servers, want);
    }

    #[test]
    fn routes_answers() {
        let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let text = "resolver 127.0.0.11 valid=10s;\nhttp {\n resolver 1.1.1.1;\n upstream u { server API:1; server b:2; }\n server { proxy_pass http://u; proxy_pass http://a; proxy_pass http://api/x; proxy_pass http://b:3; }\n}";
        let routes = routes_of_main(text);
        assert_eq!(routes.resolvers, ["127.0.0.11", "valid=10s", "1.1.1.1"]);
        assert_eq!(routes.hosts(), ["a", "api", "b"]);
        assert!(!routes.has_variable_targets());
        let cases = [
            (&["API"][..], true),
            (&["web", "B"][..], true),
            (&["u"][..], false),
            (&["web"][..], false),
            (&[][..], false),
        ];
        for (query, want) in cases {
            assert_eq!(routes.may_reach(&names(query)), want, "{query:?}");
        }
        let variable = routes_of_main("server { set $up api; proxy_pass http://$up:8000; }");
        assert!(variable.has_variable_targets());
        assert!(variable.may_reach(&names(&["anything"])));
        assert!(variable.hosts().is_empty());
    }

    #[test]
    fn hostile_input_does_not_panic() {
        let inputs = [
            "\\",
            "\"\\",
            "a \\",
            "$",
            "${",
            "a ${",
            "[",
            "include [",
            "include [!",
            "include \\",
            "é \"ü\" 'ß';",
            "a\u{0}b;",
            "proxy_pass [;",
            "proxy_pass http://[::1;",
            "proxy_pass unix:;",
            "proxy_pass :;",
            "proxy_pass http://;",
        ];
        for input in inputs {
            let _ = parse_file("t.conf", input);
            if let Ok(config) = parse_dump(&dump(&[("/etc/nginx/nginx.conf", input)])) {
                let routes = routes(&config);
                let _ = (routes.hosts(), routes.may_reach(&["x".to_owned()]));
            }
        }
        // Random text over the grammar's own characters, deterministically.
        let alphabet: Vec<char> = "ab{};\"'\\$# \n/*?[]!-:x".chars().collect();
        let mut seed: u64 = 0x5eed;
        for _ in 0..3000 {
            let text: String = (0..40)
                .filter_map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    alphabet
                        .get((seed >> 33) as usize % alphabet.len())
                        .copied()
                })
                .collect();
            let stdout =
                format!("{DUMP_HEADER}/n/x:\ninclude {text}\n{DUMP_HEADER}/n/{text}:\n{text}\n");
            if let Ok(config) = parse_dump(&stdout) {
                let _ = routes(&config).may_reach(&[]);
            }
            let _ = parse_file("t.conf", &text).map(|d| outline(&d));
        }
        let _ = parse_dump("# configuration file :\ninclude *;\n");
        let _ = parse_dump("# configuration file nginx.conf:\ninclude [];\n");
    }

    /// examples/honeychat/nginx as `nginx -T` prints it in the image.
    #[test]
    fn honeychat_example() {
        let nginx_conf = r#"daemon off;
worker_processes 1;
pid /run/nginx.pid;
error_log /dev/stderr;

events { worker_connections 256; }

http {
  include /etc/nginx/mime.types;
  access_log /dev/stdout;

  # A plain hostname (in upstreams/api.conf), resolved once at start or reload: nginx
  # keeps the old IP when api is recreated. That stale-DNS behaviour is deliberate:
  # it is what slipway's nginx plugins handle.
  upstream api_upstream {
    include /etc/nginx/upstreams/api.conf;
  }

  # The static site (rule 4): slipway's astro plugin publishes releases under
  # /srv/website and switches the `current` symlink. nginx resolves the symlink
  # on every request, so keep open_file_cache off, or reload after a switch.
  server {
    listen 8081;
    root /srv/website/current;
    index index.html;
  }

  # The Mini App (rule 5): slipway's miniapp-sw plugin publishes releases
  # under /srv/miniapp. sw.js and the page must be revalidated on every
  # fetch, or browsers keep the old service worker and the old bundle.
  server {
    listen 8082;
    root /srv/miniapp/current;
    index index.html;
    location = /sw.js {
      add_header Cache-Control "no-cache";
    }
    location = /index.html {
      add_header Cache-Control "no-cache";
    }
  }

  server {
    listen 80;

    location = /version {
      proxy_pass http://api_upstream/version;
    }
    location /api/ {
      proxy_pass http://api_upstream/;
    }
    location / {
      proxy_pass http://api_upstream;
    }
  }
}
"#;
        let mime_types = "\ntypes {\n    text/html                                        html htm shtml;\n    application/javascript                           js;\n}\n";
        let api_conf = "# nginx-zero-downtime pins this to the new container during a deploy, then puts it back.\nserver api:8000;\n";
        let routes = routes_of(&[
            ("/etc/nginx/nginx.conf", nginx_conf),
            ("/etc/nginx/mime.types", mime_types),
            ("/etc/nginx/upstreams/api.conf", api_conf),
        ]);
        let targets: Vec<_> = routes
            .targets
            .iter()
            .map(|t| (t.raw.as_str(), t.upstream.as_deref(), t.line))
            .collect();
        let up = Some("api_upstream");
        let want = [
            ("http://api_upstream/version", up, 47),
            ("http://api_upstream/", up, 50),
            ("http://api_upstream", up, 53),
        ];
        assert_eq!(targets, want);
        let servers: Vec<_> = routes
            .upstreams
            .iter()
            .flat_map(|u| &u.servers)
            .map(|s| (s.host.as_str(), s.port, s.file.as_str(), s.line))
            .collect();
        assert_eq!(
            servers,
            [("api", Some(8000), "/etc/nginx/upstreams/api.conf", 2)]
        );
        assert_eq!(routes.hosts(), ["api"]);
        assert!(!routes.has_variable_targets() && routes.resolvers.is_empty());
        assert!(routes.may_reach(&["api".to_owned()]));
        assert!(!routes.may_reach(&["website".to_owned()]));
    }
}
