//! Golden tests: the parser against openai-harmony 0.0.8, token by token.
//!
//! Every `tests/data/golden/*.json` holds a token stream and what openai-harmony's
//! `StreamableParser(enc, Role.ASSISTANT, strict=...)` did with it, recorded by
//! `scripts/record_golden.py`:
//!
//! * strict mode must match `strict=True` exactly: the content delta of every
//!   token, the error (same token index, same kind), and the messages at the end;
//! * lenient mode must match `strict=False` wherever that one succeeds, except
//!   after an intentional fix (a `constrain_as_recipient`, `channel_normalized`,
//!   `repeated_start` or `text_in_header` recovery): then only what came before the fix is
//!   compared. Where `strict=False` fails, lenient mode must not fail, and must
//!   agree with it up to the token where it failed.
//!
//! The real vocabulary is required: set `TIKTOKEN_ENCODINGS_BASE` to the directory
//! holding `o200k_base.tiktoken` (`make vocab` puts it in `.cache/tiktoken`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use harmony_stream_core::{
    Error, Message, ParseErrorKind, Parser, Recovery, RecoveryKind, Role, Vocab,
};
use serde_json::Value;

/// The golden folder must hold at least this many cases.
const MIN_CASES: usize = 20;

/// Lenient-mode recoveries that deliberately differ from openai-harmony.
const INTENTIONAL_FIXES: [RecoveryKind; 4] = [
    RecoveryKind::ConstrainAsRecipient,
    RecoveryKind::ChannelNormalized,
    RecoveryKind::RepeatedStart,
    RecoveryKind::TextInHeader,
];

/// openai-harmony's error messages (prefixes) and the error kinds they correspond to.
const ORACLE_ERRORS: [(&str, ParseErrorKind); 7] = [
    ("Unexpected token", ParseErrorKind::UnexpectedToken),
    ("Unexpected EOS", ParseErrorKind::UnexpectedEos),
    ("could not decode header", ParseErrorKind::HeaderNotUtf8),
    (
        "channel marker present but no channel value",
        ParseErrorKind::EmptyChannel,
    ),
    (
        "message header did not contain a role",
        ParseErrorKind::MissingRole,
    ),
    ("Unknown role", ParseErrorKind::UnknownRole),
    (
        "unexpected tokens remaining in message header",
        ParseErrorKind::TrailingHeaderText,
    ),
];

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/golden")
}

fn golden_files() -> Vec<PathBuf> {
    let dir = golden_dir();
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the golden folder {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("golden folder entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

fn load_vocab() -> Arc<Vocab> {
    match Vocab::load_default() {
        Ok(v) => Arc::new(v),
        Err(e) => panic!(
            "the golden tests need the real o200k_harmony vocabulary: {e}\n\
             From the repository root:\n  make vocab && TIKTOKEN_ENCODINGS_BASE=$PWD/.cache/tiktoken \
             cargo test -p harmony-stream-core --release --test golden"
        ),
    }
}

// ------------------------------------------------------------------ golden files

/// A message as compared: the fields openai-harmony reports.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Msg {
    role: String,
    name: Option<String>,
    channel: Option<String>,
    recipient: Option<String>,
    content_type: Option<String>,
    content: String,
}

impl fmt::Display for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{role: {}, name: {:?}, channel: {:?}, recipient: {:?}, content_type: {:?}, content: {:?}}}",
            self.role, self.name, self.channel, self.recipient, self.content_type, self.content
        )
    }
}

impl From<&Message> for Msg {
    fn from(m: &Message) -> Self {
        Self {
            role: m.header.role.as_str().to_string(),
            name: m.header.name.clone(),
            channel: m.header.channel.clone(),
            recipient: m.header.recipient.clone(),
            content_type: m.header.content_type.clone(),
            content: m.content.clone(),
        }
    }
}

/// What the oracle did in one mode.
struct Expected {
    deltas: Vec<Option<String>>,
    error_index: Option<usize>,
    error: Option<String>,
    messages: Vec<Msg>,
}

struct Case {
    file: String,
    description: String,
    tokens: Vec<u32>,
    strict: Expected,
    non_strict: Expected,
}

fn field<'a>(v: &'a Value, key: &str, file: &str) -> &'a Value {
    v.get(key)
        .unwrap_or_else(|| panic!("{file}: missing key {key:?}"))
}

fn opt_str(v: &Value, key: &str, file: &str) -> Option<String> {
    match field(v, key, file) {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => panic!("{file}: {key:?} must be a string or null, got {other}"),
    }
}

fn parse_expected(v: &Value, file: &str) -> Expected {
    let deltas = field(v, "deltas", file)
        .as_array()
        .unwrap_or_else(|| panic!("{file}: deltas must be a list"))
        .iter()
        .map(|d| match d {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => panic!("{file}: a delta must be a string or null, got {other}"),
        })
        .collect();
    let error_index = match field(v, "error_index", file) {
        Value::Null => None,
        n => Some(
            n.as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or_else(|| panic!("{file}: error_index must be an index, got {n}")),
        ),
    };
    let messages = field(v, "messages", file)
        .as_array()
        .unwrap_or_else(|| panic!("{file}: messages must be a list"))
        .iter()
        .map(|m| Msg {
            role: opt_str(m, "role", file)
                .unwrap_or_else(|| panic!("{file}: message without role")),
            name: opt_str(m, "name", file),
            channel: opt_str(m, "channel", file),
            recipient: opt_str(m, "recipient", file),
            content_type: opt_str(m, "content_type", file),
            content: opt_str(m, "content", file).unwrap_or_default(),
        })
        .collect();
    Expected {
        deltas,
        error_index,
        error: v.get("error").and_then(Value::as_str).map(str::to_string),
        messages,
    }
}

fn load_case(path: &Path) -> Case {
    let file = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: not valid JSON: {e}"));
    let tokens = field(&v, "tokens", &file)
        .as_array()
        .unwrap_or_else(|| panic!("{file}: tokens must be a list"))
        .iter()
        .map(|t| {
            t.as_u64()
                .and_then(|t| u32::try_from(t).ok())
                .unwrap_or_else(|| panic!("{file}: bad token id {t}"))
        })
        .collect();
    let strict = parse_expected(field(&v, "strict", &file), &file);
    let non_strict = parse_expected(field(&v, "non_strict", &file), &file);
    Case {
        description: v
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        file,
        tokens,
        strict,
        non_strict,
    }
}

// ------------------------------------------------------------------ our parser

/// What our parser did with a case's tokens.
struct Run {
    deltas: Vec<Option<String>>,
    /// Number of completed messages after each accepted token.
    messages_after: Vec<usize>,
    /// The first error: token index (token count for end of stream) and error.
    error: Option<(usize, Error)>,
    messages: Vec<Msg>,
    recoveries: Vec<Recovery>,
}

fn run(vocab: &Arc<Vocab>, tokens: &[u32], strict: bool) -> Run {
    let mut parser = Parser::new(Arc::clone(vocab), Some(Role::Assistant), strict);
    let mut deltas = Vec::with_capacity(tokens.len());
    let mut messages_after = Vec::with_capacity(tokens.len());
    let mut error = None;
    for (i, &token) in tokens.iter().enumerate() {
        match parser.process(token) {
            Ok(_) => {
                deltas.push(parser.last_content_delta().map(str::to_string));
                messages_after.push(parser.messages().len());
            }
            Err(e) => {
                error = Some((i, e));
                break;
            }
        }
    }
    if error.is_none() {
        if let Err(e) = parser.process_eos() {
            error = Some((tokens.len(), e));
        }
    }
    Run {
        deltas,
        messages_after,
        error,
        messages: parser.messages().iter().map(Msg::from).collect(),
        recoveries: parser.recoveries().to_vec(),
    }
}

// ------------------------------------------------------------------ comparisons

/// Collects the differences of one case in one mode.
struct Report<'a> {
    case: &'a Case,
    mode: &'static str,
    problems: Vec<String>,
    /// How much was compared, when not everything.
    scope: Option<String>,
}

impl<'a> Report<'a> {
    fn new(case: &'a Case, mode: &'static str) -> Self {
        Self {
            case,
            mode,
            problems: Vec::new(),
            scope: None,
        }
    }

    fn token_at(&self, index: usize) -> String {
        self.case
            .tokens
            .get(index)
            .map_or_else(|| "end of stream".to_string(), |t| format!("token {t}"))
    }

    fn fail(&mut self, what: String) {
        self.problems.push(format!(
            "{} [{}]: {what}\n    ({})",
            self.case.file, self.mode, self.case.description
        ));
    }

    /// Per-token deltas, for token indices `0..upto`.
    fn deltas(&mut self, expected: &[Option<String>], got: &[Option<String>], upto: usize) {
        for i in 0..upto {
            let (e, g) = (
                expected.get(i).cloned().flatten(),
                got.get(i).cloned().flatten(),
            );
            if e != g {
                let at = self.token_at(i);
                self.fail(format!(
                    "content delta differs at token index {i} ({at}): openai-harmony {e:?}, ours {g:?}"
                ));
                return;
            }
        }
    }

    /// Messages: ours must equal `expected` (`what` says which part is compared).
    fn messages(&mut self, expected: &[Msg], got: &[Msg], what: &str) {
        if expected == got {
            return;
        }
        let mut lines = vec![format!(
            "{what} differ: openai-harmony has {} message(s), we have {}",
            expected.len(),
            got.len()
        )];
        for i in 0..expected.len().max(got.len()) {
            let (e, g) = (expected.get(i), got.get(i));
            if e != g {
                let show = |m: Option<&Msg>| m.map_or_else(|| "(none)".to_string(), Msg::to_string);
                lines.push(format!(
                    "first difference at message {i}:\n      openai-harmony: {}\n      ours:           {}",
                    show(e),
                    show(g)
                ));
                break;
            }
        }
        self.fail(lines.join("\n    "));
    }

    fn recoveries(&self, run: &Run) -> String {
        let list: Vec<String> = run
            .recoveries
            .iter()
            .map(|r| format!("{}@{}", r.kind.as_str(), r.token_index))
            .collect();
        format!("[{}]", list.join(", "))
    }
}

fn oracle_error_kind(message: &str) -> Option<ParseErrorKind> {
    ORACLE_ERRORS
        .iter()
        .find(|(prefix, _)| message.starts_with(prefix))
        .map(|&(_, kind)| kind)
}

fn check_strict<'a>(case: &'a Case, vocab: &Arc<Vocab>) -> Report<'a> {
    let exp = &case.strict;
    let got = run(vocab, &case.tokens, true);
    let mut r = Report::new(case, "strict");
    match (&got.error, exp.error_index) {
        (None, None) => {}
        (Some((i, e)), None) => {
            let at = r.token_at(*i);
            r.fail(format!(
                "we fail at token index {i} ({at}) with {e}; openai-harmony accepts the stream"
            ));
        }
        (None, Some(ei)) => {
            let at = r.token_at(ei);
            r.fail(format!(
                "openai-harmony fails at token index {ei} ({at}) with {:?}; we accept the stream",
                exp.error.as_deref().unwrap_or_default()
            ));
        }
        (Some((i, e)), Some(ei)) => {
            if *i != ei {
                let (at, eat) = (r.token_at(*i), r.token_at(ei));
                r.fail(format!(
                    "error at a different token: openai-harmony at index {ei} ({eat}) with {:?}, \
                     ours at index {i} ({at}) with {e}",
                    exp.error.as_deref().unwrap_or_default()
                ));
            }
            let oracle_msg = exp.error.as_deref().unwrap_or_default();
            match (e, oracle_error_kind(oracle_msg)) {
                (Error::Parse { kind, .. }, Some(want)) if *kind != want => r.fail(format!(
                    "error kind differs at index {ei}: openai-harmony {oracle_msg:?} \
                     (= {want}), ours {kind} ({e})"
                )),
                (Error::Parse { .. }, Some(_)) => {}
                (_, None) => r.fail(format!(
                    "unknown openai-harmony error message {oracle_msg:?}: add it to ORACLE_ERRORS"
                )),
                (other, Some(_)) => {
                    r.fail(format!("expected a parse error at index {ei}, got {other}"))
                }
            }
        }
    }
    let upto = exp.deltas.len().min(got.deltas.len());
    r.deltas(&exp.deltas, &got.deltas, upto);
    r.messages(&exp.messages, &got.messages, "messages");
    if !got.recoveries.is_empty() {
        let list = r.recoveries(&got);
        r.fail(format!("strict mode recorded recoveries {list}"));
    }
    r
}

fn check_lenient<'a>(case: &'a Case, vocab: &Arc<Vocab>) -> Report<'a> {
    let exp = &case.non_strict;
    let got = run(vocab, &case.tokens, false);
    let mut r = Report::new(case, "lenient");
    if let Some((i, e)) = &got.error {
        let at = r.token_at(*i);
        let oracle = exp.error_index.map_or_else(
            || "openai-harmony non-strict accepts the stream".to_string(),
            |ei| format!("openai-harmony non-strict fails at index {ei}"),
        );
        r.fail(format!(
            "lenient mode failed at token index {i} ({at}): {e}; it must not fail on valid ids \
             ({oracle})"
        ));
        return r;
    }
    let fix_at = got
        .recoveries
        .iter()
        .filter(|rec| INTENTIONAL_FIXES.contains(&rec.kind))
        .map(|rec| rec.token_index)
        .min();
    let limit = [exp.error_index, fix_at].into_iter().flatten().min();
    match limit {
        None => {
            r.deltas(&exp.deltas, &got.deltas, case.tokens.len());
            r.messages(&exp.messages, &got.messages, "messages");
        }
        Some(limit) => {
            // Compare what happened before the oracle failed or we applied a fix.
            r.scope = Some(if exp.error_index == Some(limit) {
                format!(
                    "up to token index {limit}, where openai-harmony non-strict fails: {}",
                    exp.error.as_deref().unwrap_or_default()
                )
            } else {
                format!("up to token index {limit}, where we apply an intentional fix")
            });
            r.deltas(&exp.deltas, &got.deltas, limit.min(exp.deltas.len()));
            let done = limit
                .checked_sub(1)
                .and_then(|i| got.messages_after.get(i))
                .copied()
                .unwrap_or(0);
            let oracle_stopped = exp.error_index == Some(limit);
            let theirs = if oracle_stopped {
                &exp.messages[..]
            } else {
                &exp.messages[..done.min(exp.messages.len())]
            };
            let recs = r.recoveries(&got);
            r.messages(
                theirs,
                &got.messages[..done],
                &format!("messages completed before token index {limit} (our recoveries {recs})"),
            );
        }
    }
    r
}

// ------------------------------------------------------------------ tests

#[test]
fn golden_folder_has_cases() {
    let files = golden_files();
    assert!(
        files.len() >= MIN_CASES,
        "expected at least {MIN_CASES} golden files in {}, found {}: run \
         scripts/make_samples.py and scripts/record_golden.py",
        golden_dir().display(),
        files.len()
    );
    for path in &files {
        let case = load_case(path);
        for (mode, exp) in [("strict", &case.strict), ("non_strict", &case.non_strict)] {
            let want = exp.error_index.unwrap_or(case.tokens.len());
            assert_eq!(
                exp.deltas.len(),
                want,
                "{}: {mode}.deltas must have one entry per token up to the error",
                case.file
            );
        }
    }
}

#[test]
fn golden_cases_match_openai_harmony() {
    let vocab = load_vocab();
    let files = golden_files();
    assert!(
        !files.is_empty(),
        "no golden files in {}",
        golden_dir().display()
    );
    let mut problems = Vec::new();
    let mut partial = Vec::new();
    for path in &files {
        let case = load_case(path);
        for report in [check_strict(&case, &vocab), check_lenient(&case, &vocab)] {
            if let Some(scope) = &report.scope {
                partial.push(format!("  {} [{}]: {scope}", case.file, report.mode));
            }
            problems.extend(report.problems);
        }
    }
    // Shown with `--nocapture`: the cases not compared to the end.
    println!(
        "{} golden files; compared in part ({}):\n{}",
        files.len(),
        partial.len(),
        partial.join("\n")
    );
    assert!(
        problems.is_empty(),
        "{} difference(s) from openai-harmony over {} golden files:\n\n{}\n",
        problems.len(),
        files.len(),
        problems.join("\n\n")
    );
}
