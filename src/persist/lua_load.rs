//! A function library's Lua code judged the way the server's `FUNCTION LOAD` at startup
//! judges it (Redis 7.0 `function_lua.c`): compiled, then run once in a fresh Lua 5.1
//! state whose only global is a `redis` table with `register_function`, `log`, the
//! `LOG_*` levels and the version fields, each registration held to the server's rules.
//!
//! The code is untrusted: it runs with no library but the string methods (the server's
//! strings have them too), reaches no file, process or clock, and is stopped after
//! [`INSTRUCTION_CAP`] instructions (the server's 500 ms load timeout, made
//! deterministic) or when it holds more than [`MEMORY_CAP`] bytes (and room for its code).

use std::cell::RefCell;
use std::rc::Rc;

use mlua::{HookTriggers, Lua, LuaOptions, StdLib, Table, Value, VmState};

/// Instructions a library's body may run before it is stopped as the server stops one
/// running past its 500 ms load timeout (Lua 5.1 runs well over 100 million simple
/// instructions in 500 ms on the slowest server Lazarus targets; registering functions
/// takes a few hundred).
pub(crate) const INSTRUCTION_CAP: u64 = 50_000_000;
/// Bytes a library's state may hold while it loads, beyond 8 bytes a byte of its code
/// (its compiled form). Small: Lua 5.1's collector slows sharply as a state nears its
/// cap (a body filling 16 MiB is stopped in 0.4 s, 64 MiB in 7 s).
pub(crate) const MEMORY_CAP: usize = 16 << 20;
const HOOK_EVERY: u32 = 100_000;

/// The flags `register_function` takes (the server's `scripts_flags_def`, any case).
const FLAGS: [&str; 5] = [
    "no-writes",
    "allow-oom",
    "allow-stale",
    "no-cluster",
    "allow-cross-slot-keys",
];

/// Loads `body` (a library's code after its `#!lua name=...` line, that line's newline
/// first so line numbers match the server's) as the server would; `Ok`: the names of the
/// functions it registers; `Err`: the server's refusal, as it words it.
pub(crate) fn load_library(body: &[u8]) -> Result<Vec<String>, String> {
    let lua = Lua::new_with(StdLib::STRING, LuaOptions::new())
        .map_err(|e| format!("Lua could not be started here: {e}"))?;
    let _ = lua.set_memory_limit(MEMORY_CAP.saturating_add(body.len().saturating_mul(8)));
    bound_patterns(&lua).map_err(|e| format!("Lua could not be started here: {e}"))?;
    let names: Rc<RefCell<Vec<String>>> = Rc::default();
    let env = environment(&lua, Rc::clone(&names))
        .map_err(|e| format!("Lua could not be started here: {e}"))?;
    let chunk = lua
        .load(body)
        .set_name("@user_function")
        // Source text only: Lua 5.1 does not check bytecode, and a crafted binary chunk
        // escapes any sandbox. The server reads a library's code as text too (its Lua is
        // patched to refuse binary chunks), so such a library is refused by both.
        .set_mode(mlua::ChunkMode::Text)
        .set_environment(env);
    let func = chunk
        .into_function()
        .map_err(|e| format!("Error compiling function: {}", message(&e)))?;
    let ran = Rc::new(std::cell::Cell::new(0u64));
    let counter = Rc::clone(&ran);
    lua.set_hook(
        HookTriggers::new().every_nth_instruction(HOOK_EVERY),
        move |_, _| {
            counter.set(counter.get() + u64::from(HOOK_EVERY));
            if counter.get() > INSTRUCTION_CAP {
                // Raised again at every later hook: nothing in the body outlives it.
                return Err(mlua::Error::runtime("FUNCTION LOAD timeout"));
            }
            Ok(VmState::Continue)
        },
    );
    let r = func.call::<()>(());
    lua.remove_hook();
    if let Err(e) = r {
        let m = message(&e);
        let m = if ran.get() > INSTRUCTION_CAP && !m.contains("timeout") {
            "FUNCTION LOAD timeout".to_string()
        } else {
            m
        };
        return Err(format!("Error registering functions: {m}"));
    }
    let names = names.take();
    if names.is_empty() {
        return Err("No functions registered".into());
    }
    Ok(names)
}

/// Lua 5.1's pattern matcher backtracks in C, where no instruction hook runs: a pattern
/// of many quantifiers over a long subject could run for hours (on the server too, which
/// would never finish starting). The string methods that match refuse one whose
/// worst case (subject length to the power of its quantifiers) passes 10^9 steps.
fn bound_patterns(lua: &Lua) -> mlua::Result<()> {
    let string: Table = lua.globals().get("string")?;
    for name in ["find", "match", "gmatch", "gsub"] {
        let inner: mlua::Function = string.get(name)?;
        let bounded = lua.create_function(move |lua, args: mlua::MultiValue| {
            let text = |i: usize| match args.get(i) {
                Some(Value::String(s)) => s.as_bytes().to_vec(),
                Some(Value::Integer(n)) => n.to_string().into_bytes(),
                Some(Value::Number(n)) => n.to_string().into_bytes(),
                _ => Vec::new(),
            };
            let (subject, pattern) = (text(0), text(1));
            let quantifiers = pattern
                .iter()
                .filter(|c| matches!(c, b'*' | b'+' | b'-' | b'?'))
                .count();
            let steps = (subject.len().max(2) as f64).powi(quantifiers.min(64) as i32);
            if quantifiers > 1 && steps > 1e9 {
                return Err(raise(
                    lua,
                    "a pattern too costly to match here (the reader stops it)",
                ));
            }
            inner.call::<mlua::MultiValue>(args)
        })?;
        string.raw_set(name, bounded)?;
    }
    // `rep` loops in C as many times as asked, adding nothing for an empty string.
    let rep: mlua::Function = string.get("rep")?;
    let bounded = lua.create_function(move |lua, args: mlua::MultiValue| {
        let n = match args.get(1) {
            Some(Value::Integer(n)) => *n as f64,
            Some(Value::Number(n)) => *n,
            _ => 0.0,
        };
        if n > 1e8 {
            return Err(raise(
                lua,
                "a repeat count too big to run here (the reader stops it)",
            ));
        }
        rep.call::<mlua::MultiValue>(args)
    })?;
    string.raw_set("rep", bounded)?;
    Ok(())
}

/// A Lua error's message without mlua's traceback and wrapping.
fn message(e: &mlua::Error) -> String {
    match e {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::MemoryError(_) => "not enough memory".into(),
        mlua::Error::CallbackError { cause, .. } => message(cause),
        mlua::Error::ExternalError(e) => e.to_string(),
        e => e.to_string(),
    }
    .lines()
    .next()
    .unwrap_or_default()
    .to_string()
}

/// An error raised from Rust, placed as `luaL_error` places the server's: the chunk and
/// line of the Lua code that called (`user_function:2: ...`).
fn raise(lua: &Lua, m: &str) -> mlua::Error {
    let at = (1..4)
        .filter_map(|level| lua.inspect_stack(level))
        .find_map(|d| {
            let line = d.curr_line();
            let src = d.source().short_src.map(|s| s.into_owned())?;
            (line > 0).then(|| format!("{src}:{line}: "))
        })
        .unwrap_or_default();
    mlua::Error::runtime(format!("{at}{m}"))
}

fn readonly(lua: &Lua) -> mlua::Result<mlua::Function> {
    lua.create_function(|lua, _: mlua::MultiValue| -> mlua::Result<()> {
        Err(raise(lua, "Attempt to modify a readonly table"))
    })
}

/// `t` behind an empty read-only proxy that fails on names `t` does not hold.
fn protected(lua: &Lua, t: Table) -> mlua::Result<Table> {
    let proxy = lua.create_table()?;
    let meta = lua.create_table()?;
    let lookup = lua.create_function(move |lua, (_p, k): (Value, Value)| {
        let v: Value = t.raw_get(k.clone())?;
        if v.is_nil() {
            // Raised here, not through `get`, so the position is the caller's.
            let k = match k {
                Value::String(s) => s.to_string_lossy(),
                other => format!("{other:?}"),
            };
            Err(raise(
                lua,
                &format!("Script attempted to access nonexistent global variable '{k}'"),
            ))
        } else {
            Ok(v)
        }
    })?;
    meta.raw_set("__index", lookup)?;
    meta.raw_set("__newindex", readonly(lua)?)?;
    meta.raw_set("__metatable", false)?;
    proxy.set_metatable(Some(meta));
    Ok(proxy)
}

/// The globals a library sees while it loads: `redis` and nothing else.
fn environment(lua: &Lua, names: Rc<RefCell<Vec<String>>>) -> mlua::Result<Table> {
    let redis = lua.create_table()?;
    let register = lua.create_function(move |lua, args: mlua::MultiValue| {
        let name = register_args(args.into_vec()).map_err(|e| raise(lua, &message(&e)))?;
        let mut names = names.borrow_mut();
        if name.is_empty() || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
            return Err(raise(
                lua,
                "Function names can only contain letters, numbers, or underscores(_) and must \
                 be at least one character long",
            ));
        }
        if names.contains(&name) {
            return Err(raise(lua, "Function already exists in the library"));
        }
        names.push(name);
        Ok(())
    })?;
    redis.raw_set("register_function", register)?;
    redis.raw_set(
        "log",
        lua.create_function(|_, args: mlua::MultiValue| {
            if args.len() < 2 {
                return Err(mlua::Error::runtime(
                    "redis.log() requires two arguments or more.",
                ));
            }
            match args.front() {
                Some(Value::Integer(l)) if (0..=3).contains(l) => Ok(()),
                Some(Value::Number(l)) if (0.0..=3.0).contains(l) => Ok(()),
                Some(Value::Integer(_)) | Some(Value::Number(_)) => {
                    Err(mlua::Error::runtime("Invalid debug level."))
                }
                _ => Err(mlua::Error::runtime(
                    "First argument must be a number (log level).",
                )),
            }
        })?,
    )?;
    for (i, level) in ["LOG_DEBUG", "LOG_VERBOSE", "LOG_NOTICE", "LOG_WARNING"]
        .into_iter()
        .enumerate()
    {
        redis.raw_set(level, i as i64)?;
    }
    redis.raw_set("REDIS_VERSION", "7.0.0")?;
    redis.raw_set("REDIS_VERSION_NUM", 0x0007_0000)?;
    let globals = lua.create_table()?;
    globals.raw_set("redis", protected(lua, redis)?)?;
    protected(lua, globals)
}

/// `register_function`'s arguments, positional `(name, callback)` or one table of named
/// ones, read as the server reads them; `Ok`: the function's name.
fn register_args(args: Vec<Value>) -> mlua::Result<String> {
    let err = |m: &str| Err(mlua::Error::runtime(m.to_string()));
    let as_string = |v: &Value| match v {
        Value::String(s) => Some(s.to_string_lossy()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    match args.as_slice() {
        [Value::Table(t)] => {
            let (mut name, mut callback) = (None, false);
            for pair in t.clone().pairs::<Value, Value>() {
                let (k, v) = pair?;
                let Some(key) = as_string(&k) else {
                    return err(
                        "named argument key given to redis.register_function is not a string",
                    );
                };
                match key.to_ascii_lowercase().as_str() {
                    "function_name" => match as_string(&v) {
                        Some(n) => name = Some(n),
                        None => {
                            return err("function_name argument given to \
                                        redis.register_function must be a string")
                        }
                    },
                    "description" => {
                        if as_string(&v).is_none() {
                            return err("description argument given to \
                                        redis.register_function must be a string");
                        }
                    }
                    "callback" => {
                        if !matches!(v, Value::Function(_)) {
                            return err("callback argument given to redis.register_function \
                                        must be a function");
                        }
                        callback = true;
                    }
                    "flags" => {
                        let Value::Table(flags) = v else {
                            return err("flags argument to redis.register_function must be a \
                                        table representing function flags");
                        };
                        for i in 1.. {
                            let f: Value = flags.raw_get(i)?;
                            if f.is_nil() {
                                break;
                            }
                            let known = as_string(&f)
                                .is_some_and(|f| FLAGS.iter().any(|k| k.eq_ignore_ascii_case(&f)));
                            if !known {
                                return err("unknown flag given");
                            }
                        }
                    }
                    _ => return err("unknown argument given to redis.register_function"),
                }
            }
            let Some(name) = name else {
                return err("redis.register_function must get a function name argument");
            };
            if !callback {
                return err("redis.register_function must get a callback argument");
            }
            Ok(name)
        }
        [_] => err(
            "calling redis.register_function with a single argument is only applicable to Lua \
             table (representing named arguments).",
        ),
        [name, callback] => {
            let Some(name) = as_string(name) else {
                return err("first argument to redis.register_function must be a string");
            };
            if !matches!(callback, Value::Function(_)) {
                return err("second argument to redis.register_function must be a function");
            }
            Ok(name)
        }
        _ => err("wrong number of arguments to redis.register_function"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_chunk_is_refused_never_run() {
        // A compiled chunk's signature: Lua 5.1 would run its bytecode unchecked.
        let mut body = b"\n".to_vec();
        body.extend_from_slice(b"\x1bLua\x51\x00\x01\x04\x08\x04\x08\x00");
        body.extend_from_slice(&[0u8; 64]);
        let e = load_library(&body).unwrap_err();
        assert!(e.starts_with("Error compiling function: "), "{e}");
        // And with nothing before it: refused for being binary, before any of it is read.
        let e = load_library(&body[1..]).unwrap_err();
        assert!(e.starts_with("Error compiling function: "), "{e}");
        assert!(e.contains("binary"), "{e}");
    }

    #[test]
    fn loads_and_refuses_as_the_server() {
        let ok = load_library(
            b"\nredis.register_function('a', function() return 1 end)\n\
              redis.register_function{function_name='b', callback=function() end, \
              flags={'no-writes', 'ALLOW-OOM'}, description='d'}\n\
              redis.log(redis.LOG_NOTICE, ('x'):rep(3))",
        );
        assert_eq!(ok, Ok(vec!["a".to_string(), "b".to_string()]));
        let refused = |code: &[u8], want: &str| {
            let e = load_library(code).unwrap_err();
            assert!(e.contains(want), "{e}");
        };
        refused(
            b"\nredis.register_function('a', function() end",
            "Error compiling",
        );
        refused(
            b"\nlocal t = nil\nlocal x = t.y",
            "user_function:3: attempt to index",
        );
        refused(
            b"\nerror('boom')",
            "user_function:2: Script attempted to access nonexistent global variable 'error'",
        );
        refused(
            b"\nredis.call('set', 'k', 'v')",
            "nonexistent global variable 'call'",
        );
        refused(b"\nlocal x = os.time()", "nonexistent global variable 'os'");
        refused(b"\nio = 1", "readonly table");
        refused(b"\nwhile true do end", "FUNCTION LOAD timeout");
        // No `pcall` at load (the server offers none) to outlive the timeout with.
        refused(b"\npcall(print)", "nonexistent global variable 'pcall'");
        refused(
            b"\nlocal t = {} for i = 1, 1e9 do t[i] = ('x'):rep(100) .. i end",
            "memory",
        );
        refused(b"\nlocal x = 1", "No functions registered");
        refused(
            b"\nlocal s = ('a'):rep(40)\nlocal x = s:find(('a*'):rep(20) .. 'b')",
            "too costly",
        );
        refused(b"\nlocal s = (''):rep(1e15)", "too big to run");
        assert!(load_library(
            b"\nlocal n = ('f_1'):match('^(%a+)_?%d*$')\n\
              redis.register_function(n, function() end)"
        )
        .is_ok());
        refused(
            b"\nredis.register_function('a-b', function() end)",
            "Function names",
        );
        refused(
            b"\nredis.register_function('a', function() end)\n\
              redis.register_function('a', function() end)",
            "already exists",
        );
        refused(
            b"\nredis.register_function{function_name='a', callback=function() end, \
              flags={'bogus'}}",
            "unknown flag",
        );
    }
}
