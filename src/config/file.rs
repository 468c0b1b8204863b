//! `--config FILE` (`HERALD_CONFIG`): the flags of [`Config`] read from a
//! TOML file, and `herald config`, which prints the effective configuration.
//!
//! The file has one key per flag, named as the flag (`max-event-bytes =
//! 65536`, `heartbeat = "15s"`, `cors-origin = ["https://a.example"]`). The
//! keys are not listed here: they are the long names of the clap arguments of
//! [`Config`], so a new flag is a new key with nothing else to write. What a
//! key takes follows from its argument: its action (a switch takes a boolean,
//! a repeatable or comma-separated flag an array) and the type its value
//! parser makes (an integer count takes an integer, a byte size an integer or
//! a string with its unit, anything else a string). A flag is a secret when
//! its definition hides its environment value (`hide_env_values`): that one
//! marking is what redacts it and warns about a file others can read.
//!
//! Layers: clap parses the command line and the environment; every file
//! value is checked with the flag's own value parser, then, for a flag whose
//! value came from neither, appended to the command line as `--flag=value`
//! and everything is parsed again. So the command line wins over the
//! environment, which wins over the file, which wins over the defaults, and
//! a value from the file is parsed exactly as the same value on the command
//! line would be.

use std::any::TypeId;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, CommandFactory, FromArgMatches};
use toml::de::{DeTable, DeValue};

use super::{Command, Config};

/// What `herald config` prints in place of a secret.
pub const REDACTED: &str = "<redacted>";

/// The id of `--config` (the field [`Config::config`]): the one flag that is
/// not a key of the file.
const CONFIG: &str = "config";
/// `herald config`: takes every flag of the server.
const PRINT: &str = "config";
/// `herald token`: reads the file keys it shares with the server.
const TOKEN: &str = "token";

/// A parsed command line with the file applied.
#[derive(Debug)]
pub struct Loaded {
    /// The effective configuration; `command` says what to do with it. For
    /// `herald config` it holds the flags given to that subcommand.
    pub config: Config,
    /// `herald config`: the effective configuration as TOML, secrets redacted.
    pub effective: Option<String>,
    /// Said once logging is set up: a secret in a file that others can read.
    pub warnings: Vec<String>,
}

/// Why herald cannot start.
#[derive(Debug)]
pub enum LoadError {
    /// A flag, `--help` or `--version`: clap prints it and picks the exit code.
    Clap(clap::Error),
    /// The file: one line naming it, the line and the key.
    File(String),
}

impl LoadError {
    /// Prints the error (or the help) and exits: 2 for a bad file, like
    /// clap's usage errors.
    pub fn exit(self) -> ! {
        match self {
            LoadError::Clap(e) => e.exit(),
            LoadError::File(message) => {
                eprintln!("error: {message}");
                std::process::exit(2)
            }
        }
    }
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Clap(e) => write!(f, "{e}"),
            LoadError::File(message) => f.write_str(message),
        }
    }
}

/// The command line of the binary: [`Config`]'s, with every server flag
/// also on `herald config` and `--config` also on `herald token`.
pub fn command() -> clap::Command {
    let root = Config::command();
    let flags: Vec<Arg> = root
        .get_arguments()
        .filter(|arg| is_setting(arg) || arg.get_id() == CONFIG)
        .cloned()
        .collect();
    let config = flags
        .iter()
        .find(|arg| arg.get_id() == CONFIG)
        .expect("Config has a --config flag")
        .clone();
    // The groups too, so a flag that requires or conflicts with a group
    // means the same on `herald config`.
    let groups: Vec<clap::ArgGroup> = root.get_groups().cloned().collect();
    root.mut_subcommand(PRINT, |c| c.args(flags).groups(groups))
        .mut_subcommand(TOKEN, |c| c.arg(config))
}

/// Parses `args` (the program name first) with the environment and the
/// `--config` file.
pub fn load<I, T>(args: I) -> Result<Loaded, LoadError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cmd = command();
    // A first, lenient look for --config and where each value comes from:
    // a flag that needs another one (--tls-cert needs --tls-key) may get it
    // from the file. The strict parse comes last.
    let first = cmd
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(&args)
        .map_err(LoadError::Clap)?;
    let given = args.clone();
    let subcommand = first.subcommand_name().map(str::to_owned);
    let target_of = |m: &ArgMatches| -> ArgMatches {
        match m.subcommand() {
            Some((_, sub)) => sub.clone(),
            None => m.clone(),
        }
    };
    let target = target_of(&first);
    let target_cmd = match &subcommand {
        Some(name) => cmd.find_subcommand(name).expect("a parsed subcommand"),
        None => &cmd,
    };

    let mut warnings = Vec::new();
    let mut file_values = Vec::new();
    let path = target.get_one::<PathBuf>(CONFIG).cloned();
    if let Some(path) = &path {
        let file = File::read(path)?;
        warnings.extend(file.warning());
        for setting in file.settings {
            // `herald token` takes only the keys it shares with the server.
            let Some(arg) = target_cmd
                .get_arguments()
                .find(|arg| arg.get_long() == Some(setting.key.as_str()))
            else {
                continue;
            };
            let id = arg.get_id().as_str();
            if matches!(
                target.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            ) {
                continue;
            }
            if setting.placeholder {
                return Err(LoadError::File(format!(
                    "{}: line {}, key `{}`: holds \"{REDACTED}\", what `herald config` prints \
                     for a secret: write the secret itself, or set it in the environment",
                    path.display(),
                    setting.line,
                    setting.key
                )));
            }
            args.extend(setting.argv);
            file_values.push(id.to_owned());
        }
    }

    let matches = match cmd.clone().try_get_matches_from(&args) {
        Ok(matches) => matches,
        Err(e) => return Err(blame(&cmd, &given, path.as_deref(), e)),
    };
    let target = target_of(&matches);
    let (config, effective) = if subcommand.as_deref() == Some(PRINT) {
        let mut config = Config::from_arg_matches(&target).map_err(LoadError::Clap)?;
        config.command = Some(Command::Config);
        let sources = Sources {
            file: path.as_deref(),
            from_file: &file_values,
        };
        let effective = effective(&target, &sources).map_err(LoadError::File)?;
        (config, Some(effective))
    } else {
        let config = Config::from_arg_matches(&matches).map_err(LoadError::Clap)?;
        (config, None)
    };
    Ok(Loaded {
        config,
        effective,
        warnings,
    })
}

/// A strict parse failed: the command line's own mistake is clap's to show
/// (with its usage); one that the file's values make (a file flag that
/// needs another one) is the file's, on one line.
fn blame(
    cmd: &clap::Command,
    given: &[OsString],
    file: Option<&Path>,
    e: clap::Error,
) -> LoadError {
    let Some(file) = file else {
        return LoadError::Clap(e);
    };
    match cmd.clone().try_get_matches_from(given) {
        Err(own) if own.kind() == e.kind() && one_line(&own) == one_line(&e) => {
            LoadError::Clap(own)
        }
        _ => LoadError::File(format!("{}: {}", file.display(), one_line(&e))),
    }
}

/// Whether `arg` is a setting of the server, so a key of the file: every
/// flag with a long name but `--config` itself, `--help` and `--version`.
fn is_setting(arg: &Arg) -> bool {
    arg.get_long().is_some()
        && arg.get_id() != CONFIG
        && !matches!(
            arg.get_action(),
            ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
        )
}

/// The server flags, in the order `--help` lists them.
fn settings(cmd: &clap::Command) -> impl Iterator<Item = &Arg> {
    cmd.get_arguments().filter(|arg| is_setting(arg))
}

/// What a key of the file takes, from the flag's action and value type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `--h2c`: a boolean; true (false for a `SetFalse` flag) gives the flag.
    Switch { gives_flag_when: bool },
    /// `--flag -v -v`: an integer, the number of times.
    Counter,
    /// A flag whose value is a boolean (`--anonymous false`).
    Bool,
    /// A count: an integer.
    Integer,
    /// A byte size: an integer, or a string with its unit.
    Size,
    /// Anything else (a duration, an address, a path, a name): a string.
    Text { duration: bool },
}

impl Shape {
    fn of(arg: &Arg) -> Shape {
        let ty = arg.get_value_parser().type_id();
        let is = |id: TypeId| ty == id;
        match arg.get_action() {
            ArgAction::SetTrue => {
                return Shape::Switch {
                    gives_flag_when: true,
                }
            }
            ArgAction::SetFalse => {
                return Shape::Switch {
                    gives_flag_when: false,
                }
            }
            ArgAction::Count => return Shape::Counter,
            _ => {}
        }
        if is(TypeId::of::<bool>()) {
            Shape::Bool
        } else if [
            TypeId::of::<u8>(),
            TypeId::of::<u16>(),
            TypeId::of::<u32>(),
            TypeId::of::<u64>(),
            TypeId::of::<i8>(),
            TypeId::of::<i16>(),
            TypeId::of::<i32>(),
            TypeId::of::<i64>(),
        ]
        .into_iter()
        .any(is)
        {
            Shape::Integer
        } else if is(TypeId::of::<usize>()) {
            Shape::Size
        } else {
            Shape::Text {
                duration: is(TypeId::of::<Duration>()),
            }
        }
    }

    /// What a value must be, for an error.
    fn expects(self) -> &'static str {
        match self {
            Shape::Switch { .. } | Shape::Bool => "true or false",
            Shape::Counter | Shape::Integer => "an integer",
            Shape::Size => "an integer, or a string with its unit like \"1MiB\"",
            Shape::Text { duration: true } => "a string with its unit, like \"15s\"",
            Shape::Text { duration: false } => "a string",
        }
    }
}

/// Whether the flag takes several values: repeatable or comma-separated.
fn is_list(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Append)
        || arg.get_value_delimiter().is_some()
        || arg.get_num_args().is_some_and(|n| n.max_values() > 1)
}

/// Whether the flag is a secret: its definition hides its environment value.
fn is_secret(arg: &Arg) -> bool {
    arg.is_hide_env_values_set()
}

/// Whether a value of a secret flag is itself secret: all are, but a URL
/// with no password (`redis://host:6379/0`) is not.
fn is_secret_value(value: &str) -> bool {
    let Some((scheme, rest)) = value.split_once("://") else {
        return true;
    };
    let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let password = authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'));
    !is_scheme || password
}

/// One key of the file, checked.
struct Setting {
    key: String,
    line: usize,
    /// The flag as it would be written on the command line.
    argv: Vec<OsString>,
    /// A secret's value is [`REDACTED`]: the file was printed by
    /// `herald config` and the secret not put back.
    placeholder: bool,
    /// The value is a secret.
    secret: bool,
}

/// A config file, every key checked against the flags.
struct File {
    path: PathBuf,
    settings: Vec<Setting>,
    /// Permission bits, where the system has them.
    mode: Option<u32>,
}

impl File {
    fn read(path: &Path) -> Result<File, LoadError> {
        let shown = path.display();
        let fail = |why: String| LoadError::File(format!("{shown}: {why}"));
        let metadata = std::fs::metadata(path)
            .map_err(|e| fail(format!("cannot read the config file: {e}")))?;
        if metadata.is_dir() {
            return Err(fail(
                "is a directory; --config names a TOML file".to_owned(),
            ));
        }
        let bytes =
            std::fs::read(path).map_err(|e| fail(format!("cannot read the config file: {e}")))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let (line, column) = line_column(
                &String::from_utf8_lossy(e.as_bytes()),
                e.utf8_error().valid_up_to(),
            );
            fail(format!(
                "line {line}, column {column}: not UTF-8, so not a TOML file"
            ))
        })?;
        let table = DeTable::parse(&text).map_err(|e| {
            let at = e.span().unwrap_or(0..0);
            let (line, column) = line_column(&text, at.start);
            // Only a duplicate's span is a key for sure; another error's
            // may be a value, perhaps a secret, so it is not quoted.
            let key = match text.get(at.clone()) {
                Some(key) if e.message().starts_with("duplicate key") => {
                    format!(", key `{}`", key.trim_matches(['"', '\'']))
                }
                _ => String::new(),
            };
            fail(format!(
                "line {line}, column {column}{key}: not valid TOML: {}",
                e.message()
            ))
        })?;
        let cmd = Config::command();
        let mut entries: Vec<_> = table.get_ref().iter().collect();
        entries.sort_by_key(|(key, _)| key.span().start);
        let mut settings = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let line = line_column(&text, key.span().start).0;
            let name: &str = key.get_ref();
            let at = |why: String| fail(format!("line {line}, key `{name}`: {why}"));
            let arg = settings_named(&cmd, name).ok_or_else(|| {
                if value.get_ref().is_table() {
                    at("a table: the file is flat, one key per flag and no [sections]".to_owned())
                } else if name == CONFIG {
                    at("names the config file itself, so it cannot be set in one".to_owned())
                } else {
                    at(unknown_key(&cmd, name))
                }
            })?;
            settings.push(setting(arg, name, line, value.get_ref()).map_err(at)?);
        }
        #[cfg(unix)]
        let mode = Some(std::os::unix::fs::PermissionsExt::mode(
            &metadata.permissions(),
        ));
        #[cfg(not(unix))]
        let mode = None;
        Ok(File {
            path: path.to_owned(),
            settings,
            mode,
        })
    }

    /// A warning when the file holds a secret that other users can read.
    fn warning(&self) -> Option<String> {
        let mode = self.mode?;
        let secrets: Vec<String> = self
            .settings
            .iter()
            .filter(|s| s.secret)
            .map(|s| format!("`{}`", s.key))
            .collect();
        if secrets.is_empty() || mode & 0o044 == 0 {
            return None;
        }
        let shown = self.path.display();
        Some(format!(
            "{shown} holds a secret ({}) and other users can read it (mode {:o}): \
             chmod 600 {shown}, or set the secret in the environment",
            secrets.join(", "),
            mode & 0o777
        ))
    }
}

fn settings_named<'a>(cmd: &'a clap::Command, key: &str) -> Option<&'a Arg> {
    settings(cmd).find(|arg| arg.get_long() == Some(key))
}

/// "unknown key", and the nearest flag if one is near.
fn unknown_key(cmd: &clap::Command, key: &str) -> String {
    let nearest = settings(cmd)
        .filter_map(Arg::get_long)
        .map(|long| (strsim::jaro_winkler(key, long), long))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match nearest {
        Some((score, long)) if score > 0.8 => {
            format!("unknown key; did you mean `{long}`?")
        }
        _ => "unknown key: the keys are the long names of the flags in `herald --help`".to_owned(),
    }
}

/// Checks one key's value and turns it into the flag's command line.
fn setting(arg: &Arg, key: &str, line: usize, value: &DeValue<'_>) -> Result<Setting, String> {
    let shape = Shape::of(arg);
    let flag = format!("--{key}");
    let mut setting = Setting {
        key: key.to_owned(),
        line,
        argv: Vec::new(),
        placeholder: false,
        secret: false,
    };
    match shape {
        Shape::Switch { gives_flag_when } => {
            let DeValue::Boolean(on) = value else {
                return Err(wrong_type(shape, value));
            };
            if *on == gives_flag_when {
                setting.argv.push(flag.into());
            }
            return Ok(setting);
        }
        Shape::Counter => {
            let times = match value {
                DeValue::Integer(n) => u8::from_str_radix(n.as_str(), n.radix()).ok(),
                _ => return Err(wrong_type(shape, value)),
            }
            .ok_or("an integer from 0 to 255")?;
            setting.argv = (0..times).map(|_| OsString::from(&flag)).collect();
            return Ok(setting);
        }
        _ => {}
    }
    let values: Vec<String> = if is_list(arg) {
        let DeValue::Array(items) = value else {
            return Err(format!(
                "expected an array (of {}), like {key} = [\"…\"]; found {}",
                shape.expects(),
                value.type_str()
            ));
        };
        if items.is_empty() {
            return Err(
                "an empty array sets nothing: remove the key to keep the default".to_owned(),
            );
        }
        let values = items
            .iter()
            .map(|item| scalar(shape, item.get_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(delimiter) = arg.get_value_delimiter() {
            if values.iter().any(|v| v.contains(delimiter)) {
                return Err(format!(
                    "an element holds `{delimiter}`: give each value as its own element"
                ));
            }
        }
        values
    } else {
        vec![scalar(shape, value)?]
    };
    check(arg, &values)?;
    if is_secret(arg) {
        setting.placeholder = values.iter().any(|v| v == REDACTED);
        setting.secret = values.iter().any(|v| v != REDACTED && is_secret_value(v));
    }
    setting.argv = values
        .into_iter()
        .map(|v| OsString::from(format!("{flag}={v}")))
        .collect();
    Ok(setting)
}

/// One value of the file as the flag would take it on the command line.
fn scalar(shape: Shape, value: &DeValue<'_>) -> Result<String, String> {
    match (shape, value) {
        (Shape::Bool, DeValue::Boolean(b)) => Ok(b.to_string()),
        (Shape::Integer | Shape::Size, DeValue::Integer(n)) => {
            i128::from_str_radix(n.as_str(), n.radix())
                .map(|n| n.to_string())
                .map_err(|_| "integer out of range".to_owned())
        }
        (Shape::Size | Shape::Text { .. }, DeValue::String(s)) => Ok(s.to_string()),
        _ => Err(wrong_type(shape, value)),
    }
}

fn wrong_type(shape: Shape, value: &DeValue<'_>) -> String {
    format!("expected {}, found {}", shape.expects(), value.type_str())
}

/// Runs `values` through the flag's own value parser, so a file value is
/// refused exactly when the same value on the command line would be.
fn check(arg: &Arg, values: &[String]) -> Result<(), String> {
    let probe = clap::Command::new("herald").no_binary_name(true).arg(
        Arg::new("value")
            .long("value")
            .action(ArgAction::Append)
            .value_parser(arg.get_value_parser().clone()),
    );
    let argv = values.iter().map(|v| format!("--value={v}"));
    match probe.try_get_matches_from(argv) {
        Ok(_) => Ok(()),
        Err(e) => Err(reason(&e, arg)),
    }
}

/// What a value parser said, without clap's usage lines or the probe's name.
fn reason(e: &clap::Error, arg: &Arg) -> String {
    let value = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(v)) if !is_secret(arg) => format!(" {v:?}"),
        _ => String::new(),
    };
    if let Some(source) = std::error::Error::source(e) {
        return format!("invalid value{value}: {source}");
    }
    if e.kind() == ErrorKind::InvalidValue {
        if let Some(ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue) {
            return format!(
                "invalid value{value}; possible values: {}",
                valid.join(", ")
            );
        }
    }
    let rendered = e.render().to_string();
    let first = rendered.lines().next().unwrap_or("invalid value");
    first
        .trim_start_matches("error: ")
        .replace("'--value <value>'", "the key")
}

/// A clap error on one line, without the usage that follows it.
fn one_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let message: Vec<&str> = rendered
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect();
    message.join(" ").trim_start_matches("error: ").to_owned()
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// Where values came from, for the comments of `herald config`.
struct Sources<'a> {
    file: Option<&'a Path>,
    from_file: &'a [String],
}

/// The effective configuration in `matches` as a TOML file `--config`
/// takes: every flag in `--help` order with its help as a comment, where
/// its value came from, and every secret shown as [`REDACTED`].
fn effective(matches: &ArgMatches, sources: &Sources<'_>) -> Result<String, String> {
    let mut out = String::from(
        "# herald's effective configuration (`herald config`): the command line, the\n\
         # environment, the --config file and the defaults. Secrets show as \"<redacted>\".\n",
    );
    for arg in settings(&Config::command()) {
        let id = arg.get_id().as_str();
        let long = arg.get_long().unwrap_or(id);
        out.push('\n');
        if let Some(help) = arg.get_help() {
            comment(&mut out, &help.to_string());
        }
        let Some(value) = value(matches, arg)? else {
            let _ = writeln!(out, "# {long} is not set");
            continue;
        };
        let from = match matches.value_source(id) {
            _ if sources.from_file.iter().any(|f| f == id) => match sources.file {
                Some(file) => format!("  # from {}", file.display()),
                None => String::new(),
            },
            Some(ValueSource::CommandLine) => "  # from the command line".to_owned(),
            Some(ValueSource::EnvVariable) => match arg.get_env() {
                Some(env) => format!("  # from {}", env.to_string_lossy()),
                None => "  # from the environment".to_owned(),
            },
            _ => String::new(),
        };
        let _ = writeln!(out, "{long} = {value}{from}");
    }
    Ok(out)
}

/// `text` as `#` comment lines of at most 80 characters (a longer word
/// keeps its own line).
fn comment(out: &mut String, text: &str) {
    for paragraph in text.lines() {
        let mut line = String::from("#");
        for word in paragraph.split_whitespace() {
            if line.len() > 1 && line.len() + 1 + word.len() > 80 {
                let _ = writeln!(out, "{line}");
                line = String::from("#");
            }
            line.push(' ');
            line.push_str(word);
        }
        let _ = writeln!(out, "{line}");
    }
}

/// The value of one flag as TOML, or `None` when it has none.
fn value(matches: &ArgMatches, arg: &Arg) -> Result<Option<toml::Value>, String> {
    let id = arg.get_id().as_str();
    let long = arg.get_long().unwrap_or(id);
    let shape = Shape::of(arg);
    match shape {
        Shape::Switch { .. } | Shape::Bool => {
            let value = matches.try_get_one::<bool>(id).map_err(|e| e.to_string())?;
            return Ok(value.map(|b| toml::Value::Boolean(*b)));
        }
        Shape::Counter => {
            let value = matches.try_get_one::<u8>(id).map_err(|e| e.to_string())?;
            return Ok(value.map(|n| toml::Value::Integer(i64::from(*n))));
        }
        _ => {}
    }
    let Some(raw) = matches.get_raw(id) else {
        return Ok(None);
    };
    let items = raw
        .map(|raw: &OsStr| {
            let text = raw
                .to_str()
                .ok_or_else(|| format!("--{long} is not UTF-8, which a TOML file cannot hold"))?;
            Ok(if is_secret(arg) && is_secret_value(text) {
                toml::Value::String(REDACTED.to_owned())
            } else {
                item(shape, text)
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    if is_list(arg) {
        Ok((!items.is_empty()).then_some(toml::Value::Array(items)))
    } else {
        Ok(items.into_iter().next())
    }
}

/// One raw value as the file would hold it.
fn item(shape: Shape, text: &str) -> toml::Value {
    let integer = text.trim().parse::<i64>().ok();
    match (shape, integer) {
        (Shape::Integer, Some(n)) => toml::Value::Integer(n),
        (Shape::Size, Some(n)) if text.trim().bytes().all(|b| b.is_ascii_digit()) => {
            toml::Value::Integer(n)
        }
        _ => toml::Value::String(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn every_secret_type_is_marked_secret() {
        // A flag of type `Secret` that forgot `hide_env_values` would be
        // printed by `herald config`.
        for arg in settings(&Config::command()) {
            if arg.get_value_parser().type_id() == TypeId::of::<super::super::Secret>() {
                assert!(is_secret(arg), "--{:?} holds a Secret", arg.get_long());
            }
        }
    }

    #[test]
    fn shapes_follow_the_flag_definitions() {
        let cmd = Config::command();
        let shape = |key| Shape::of(settings_named(&cmd, key).unwrap());
        assert_eq!(
            shape("h2c"),
            Shape::Switch {
                gives_flag_when: true
            }
        );
        assert_eq!(shape("anonymous"), Shape::Bool);
        assert_eq!(shape("history"), Shape::Integer);
        assert_eq!(shape("history-bytes"), Shape::Size);
        assert_eq!(shape("heartbeat"), Shape::Text { duration: true });
        assert_eq!(shape("history-age"), Shape::Text { duration: true });
        assert_eq!(shape("listen"), Shape::Text { duration: false });
        let list = |key| is_list(settings_named(&cmd, key).unwrap());
        assert!(list("cors-origin") && list("publish-token") && list("jwt-public-key"));
        assert!(!list("listen") && !list("redis"));
        let secret = |key| is_secret(settings_named(&cmd, key).unwrap());
        assert!(secret("publish-token") && secret("jwt-secret") && secret("redis"));
        assert!(!secret("listen") && !secret("jwt-public-key"));
    }

    #[test]
    fn a_url_is_secret_only_with_a_password() {
        assert!(!is_secret_value("redis://127.0.0.1:6379/0"));
        assert!(!is_secret_value("redis://user@host/0"));
        assert!(is_secret_value("redis://:pw@host/0"));
        assert!(is_secret_value("rediss://user:pw@host:6380"));
        assert!(is_secret_value("a-plain-token"));
        assert!(is_secret_value("not a url://x"));
    }

    #[test]
    fn lines_and_columns_count_from_one() {
        assert_eq!(line_column("a = 1\nbb = 2\n", 0), (1, 1));
        assert_eq!(line_column("a = 1\nbb = 2\n", 6), (2, 1));
        assert_eq!(line_column("a = 1\nbb = 2\n", 11), (2, 6));
    }

    #[test]
    fn a_near_miss_suggests_the_flag() {
        let cmd = Config::command();
        assert!(unknown_key(&cmd, "max-conections").contains("`max-connections`"));
        assert!(unknown_key(&cmd, "max_event_bytes").contains("`max-event-bytes`"));
        assert!(!unknown_key(&cmd, "zzzz").contains("did you mean"));
    }
}
