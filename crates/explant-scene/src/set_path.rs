//! Setting a scene field by its path (`ligands.WNT3A.decay`, `perturbations[0].gene`):
//! what sweeps vary and what `explant run --set` overrides.

/// One step of a path: a table key, an array index, or an array item by `name`.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

fn parse(path: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if key.is_empty() && steps.is_empty() {
            return Err(format!("`{path}` must start with a field name"));
        }
        if !key.is_empty() {
            steps.push(Step::Key(key.to_string()));
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let Some(end) = inner.find(']') else { return Err(format!("`{path}`: unclosed `[`")) };
            let n = inner[..end]
                .trim()
                .parse::<usize>()
                .map_err(|_| format!("`{path}`: `[{}]` is not an index", &inner[..end]))?;
            steps.push(Step::Index(n));
            rest = &inner[end + 1..];
        }
        if !rest.is_empty() {
            return Err(format!("`{path}`: unexpected `{rest}`"));
        }
    }
    Ok(steps)
}

/// The path up to and including step `k`, for messages.
fn shown(steps: &[Step], k: usize) -> String {
    steps[..=k]
        .iter()
        .map(|s| match s {
            Step::Key(key) => format!(".{key}"),
            Step::Index(i) => format!("[{i}]"),
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string()
}

fn set_in(here: &mut toml::Value, steps: &[Step], k: usize, value: &toml::Value) -> Result<(), String> {
    let last = k + 1 == steps.len();
    match (here, &steps[k]) {
        (toml::Value::Table(t), Step::Key(key)) => {
            if last {
                let v = match (t.get(key), value) {
                    (Some(toml::Value::Float(_)), toml::Value::Integer(i)) => toml::Value::Float(*i as f64),
                    _ => value.clone(),
                };
                t.insert(key.clone(), v);
                return Ok(());
            }
            let keys: Vec<String> = t.keys().cloned().collect();
            match t.get_mut(key) {
                Some(child) => set_in(child, steps, k + 1, value),
                None => Err(format!(
                    "`{}` does not exist (there: {}){}",
                    shown(steps, k),
                    keys.join(", "),
                    crate::suggest(key, &keys)
                )),
            }
        }
        (toml::Value::Array(items), Step::Key(name)) => {
            let names: Vec<String> =
                items.iter().filter_map(|i| i.get("name").and_then(|n| n.as_str()).map(String::from)).collect();
            let Some(i) = items.iter().position(|i| i.get("name").and_then(|n| n.as_str()) == Some(name.as_str()))
            else {
                return Err(format!(
                    "no item named `{name}` at `{}` (names: {}){}",
                    shown(steps, k),
                    names.join(", "),
                    crate::suggest(name, &names)
                ));
            };
            if last {
                return Err(format!("`{}` is a whole table; name one of its fields", shown(steps, k)));
            }
            set_in(&mut items[i], steps, k + 1, value)
        }
        (toml::Value::Array(items), Step::Index(i)) => {
            if *i >= items.len() {
                return Err(format!("`{}`: index {i} but the array has {} items", shown(steps, k), items.len()));
            }
            if last {
                items[*i] = value.clone();
                return Ok(());
            }
            set_in(&mut items[*i], steps, k + 1, value)
        }
        (other, _) => Err(format!("`{}` steps into a {}, not a table or array", shown(steps, k), other.type_str())),
    }
}

/// Set the field at `path` in a scene document to `value`. Keys of tables are followed
/// (a missing last key is created, so a defaulted field can be set); in an array of
/// tables a key selects the item whose `name` equals it (`ligands.WNT3A`), and `[n]`
/// selects by index. A float field given an integer keeps its type. Errors name the
/// step that does not resolve and what is there.
pub fn set_path(doc: &mut toml::Table, path: &str, value: toml::Value) -> Result<(), String> {
    let steps = parse(path)?;
    let mut root = toml::Value::Table(std::mem::take(doc));
    let result = set_in(&mut root, &steps, 0, &value);
    if let toml::Value::Table(t) = root {
        *doc = t;
    }
    result
}
