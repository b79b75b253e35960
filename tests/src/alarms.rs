//! template.yaml's CloudWatch alarms, read and evaluated the way CloudWatch evaluates them, so a
//! test can show that what the real functions emitted (their EMF documents) or what the real
//! queues hold (moto) breaches an alarm's metric, dimensions, statistic and threshold.
//!
//! Nothing here stands in for CloudWatch's own scheduling: a test hands over one [`Period`] per
//! evaluation period (the datapoints of that period), newest last, and [`Alarm::state`] applies
//! the threshold, `DatapointsToAlarm` of `EvaluationPeriods` and `TreatMissingData`. Metric math
//! covers the forms the template uses (`IF`, comparisons, `+ - * /`, `MAX([..])`, `SUM([..])`).
//! CloudWatch matches a metric by its exact dimension set: so does [`Period::value`].

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde_json::Value;

/// A metric as CloudWatch names it: namespace, name and its whole dimension set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricId {
    pub namespace: String,
    pub name: String,
    pub dimensions: BTreeMap<String, String>,
}

impl MetricId {
    pub fn new(namespace: &str, name: &str, dimensions: &[(&str, &str)]) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            dimensions: dimensions.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }
}

/// The datapoints of one evaluation period: every value each metric got in it.
#[derive(Debug, Clone, Default)]
pub struct Period {
    values: HashMap<MetricId, Vec<f64>>,
}

impl Period {
    /// The metrics of EMF documents (one per line) as CloudWatch extracts them, with the `Function`
    /// dimension set to `function`: the tests run every function in one process, under one EMF
    /// collector, where production has one function per process, each naming itself.
    pub fn add_emf(&mut self, documents: &str, function: &str) -> &mut Self {
        for line in documents.lines().filter(|l| !l.trim().is_empty()) {
            let mut doc: Value = serde_json::from_str(line).expect("EMF documents are JSON");
            doc["Function"] = Value::String(function.into());
            for directive in doc["_aws"]["CloudWatchMetrics"].as_array().expect("CloudWatchMetrics") {
                let namespace = directive["Namespace"].as_str().expect("Namespace");
                for set in directive["Dimensions"].as_array().expect("Dimensions") {
                    let dimensions: BTreeMap<String, String> = set
                        .as_array()
                        .expect("a dimension set")
                        .iter()
                        .map(|d| {
                            let d = d.as_str().expect("a dimension name");
                            (d.to_string(), doc[d].as_str().expect("a dimension value").to_string())
                        })
                        .collect();
                    for metric in directive["Metrics"].as_array().expect("Metrics") {
                        let name = metric["Name"].as_str().expect("Name");
                        let values: Vec<f64> = match &doc[name] {
                            Value::Array(a) => a.iter().filter_map(Value::as_f64).collect(),
                            v => v.as_f64().into_iter().collect(),
                        };
                        let id =
                            MetricId { namespace: namespace.into(), name: name.into(), dimensions: dimensions.clone() };
                        self.values.entry(id).or_default().extend(values);
                    }
                }
            }
        }
        self
    }

    /// A datapoint of a metric no function emits (AWS/SQS, AWS/ApiGateway), as the test observed it.
    pub fn observe(&mut self, metric: MetricId, value: f64) -> &mut Self {
        self.values.entry(metric).or_default().push(value);
        self
    }

    /// The metric's statistic over the period; `None` when it has no datapoint (missing data).
    pub fn value(&self, metric: &MetricId, stat: &str) -> Option<f64> {
        let v = self.values.get(metric).filter(|v| !v.is_empty())?;
        Some(match stat {
            "Sum" => v.iter().sum(),
            "Maximum" => v.iter().cloned().fold(f64::MIN, f64::max),
            "Minimum" => v.iter().cloned().fold(f64::MAX, f64::min),
            "SampleCount" => v.len() as f64,
            "Average" => v.iter().sum::<f64>() / v.len() as f64,
            other => panic!("statistic {other} is not evaluated here"),
        })
    }

    /// The metric ids of the period (for messages).
    pub fn metrics(&self) -> Vec<&MetricId> {
        let mut ids: Vec<&MetricId> = self.values.keys().collect();
        ids.sort();
        ids
    }
}

/// What an alarm evaluates.
#[derive(Debug, Clone)]
pub enum Query {
    Metric {
        metric: MetricId,
        stat: String,
        period: u64,
    },
    /// `expression` over the named metrics (the `ReturnData: false` entries).
    Math {
        expression: String,
        metrics: BTreeMap<String, (MetricId, String)>,
        period: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Ok,
    Alarm,
    InsufficientData,
}

/// One `AWS::CloudWatch::Alarm` of the template, its parameters resolved.
#[derive(Debug, Clone)]
pub struct Alarm {
    pub logical_id: String,
    /// The description as written (`${...}` unresolved).
    pub description: String,
    /// The resource's `Condition`, if any.
    pub condition: Option<String>,
    pub alarm_actions: Vec<String>,
    pub ok_actions: Vec<String>,
    pub query: Query,
    pub threshold: f64,
    pub comparison: String,
    pub evaluation_periods: usize,
    pub datapoints_to_alarm: usize,
    pub treat_missing: String,
}

/// template.yaml, parsed (the short-form tags `!Ref X`, `!GetAtt X.Y`, `!Sub s` read as their
/// scalar: `X`, `X.Y`, `s`).
pub fn template() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    serde_saphyr::from_str(&std::fs::read_to_string(path).expect("template.yaml")).expect("template.yaml parses")
}

/// Every alarm of the template, parameters at their defaults except `overrides`.
pub fn alarms(template: &Value, overrides: &[(&str, &str)]) -> Vec<Alarm> {
    let parameters = &template["Parameters"];
    let number = |v: &Value| -> f64 {
        if let Some(n) = v.as_f64() {
            return n;
        }
        let name = v.as_str().unwrap_or_else(|| panic!("not a number or a parameter: {v}"));
        let given = overrides.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
        let default = &parameters[name]["Default"];
        let text =
            given.or_else(|| default.as_str().map(str::to_string)).or_else(|| default.as_f64().map(|n| n.to_string()));
        text.and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("parameter {name} has no numeric value"))
    };
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect()
    };
    let metric = |m: &Value| MetricId {
        namespace: m["Namespace"].as_str().expect("Namespace").into(),
        name: scalar(&m["MetricName"]),
        dimensions: m["Dimensions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| (scalar(&d["Name"]), scalar(&d["Value"])))
            .collect(),
    };
    let mut out = Vec::new();
    let resources = template["Resources"].as_object().expect("Resources");
    for (id, resource) in resources {
        if resource["Type"] != "AWS::CloudWatch::Alarm" {
            continue;
        }
        let p = &resource["Properties"];
        let query = if let Some(entries) = p["Metrics"].as_array() {
            let returned = entries.iter().find(|e| e.get("Expression").is_some()).expect("an expression");
            let mut metrics = BTreeMap::new();
            let mut period = 0;
            for e in entries.iter().filter(|e| e.get("MetricStat").is_some()) {
                let stat = &e["MetricStat"];
                period = number(&stat["Period"]) as u64;
                metrics.insert(scalar(&e["Id"]), (metric(&stat["Metric"]), scalar(&stat["Stat"])));
            }
            Query::Math { expression: scalar(&returned["Expression"]), metrics, period }
        } else {
            Query::Metric { metric: metric(p), stat: scalar(&p["Statistic"]), period: number(&p["Period"]) as u64 }
        };
        let evaluation_periods = number(&p["EvaluationPeriods"]) as usize;
        out.push(Alarm {
            logical_id: id.clone(),
            description: scalar(&p["AlarmDescription"]),
            condition: resource["Condition"].as_str().map(str::to_string),
            alarm_actions: strings(&p["AlarmActions"]),
            ok_actions: strings(&p["OKActions"]),
            query,
            threshold: number(&p["Threshold"]),
            comparison: scalar(&p["ComparisonOperator"]),
            evaluation_periods,
            datapoints_to_alarm: p.get("DatapointsToAlarm").map_or(evaluation_periods, |d| number(d) as usize),
            treat_missing: p["TreatMissingData"].as_str().unwrap_or("missing").into(),
        });
    }
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        // `!Sub [text, {vars}]`: the text.
        Value::Array(a) => a.first().map(scalar).unwrap_or_default(),
        other => panic!("not a scalar: {other}"),
    }
}

impl Alarm {
    /// The severity its description opens with (`SEV1` .. `SEV3`).
    pub fn severity(&self) -> Option<&str> {
        let first = self.description.split(' ').next()?;
        ["SEV1", "SEV2", "SEV3"].contains(&first).then_some(first)
    }

    /// The runbook file its description links last (`Runbook: ${RunbookBaseUrl}/<file>.md`).
    pub fn runbook(&self) -> Option<&str> {
        let (_, file) = self.description.rsplit_once("Runbook: ${RunbookBaseUrl}/")?;
        (file.ends_with(".md") && !file.contains(char::is_whitespace)).then_some(file)
    }

    /// The metrics it reads.
    pub fn metrics(&self) -> Vec<(&MetricId, &str)> {
        match &self.query {
            Query::Metric { metric, stat, .. } => vec![(metric, stat.as_str())],
            Query::Math { metrics, .. } => metrics.values().map(|(m, s)| (m, s.as_str())).collect(),
        }
    }

    /// The alarm's value in one period; `None` = missing data.
    pub fn value(&self, period: &Period) -> Option<f64> {
        match &self.query {
            Query::Metric { metric, stat, .. } => period.value(metric, stat),
            Query::Math { expression, metrics, .. } => {
                let vars: HashMap<&str, Option<f64>> =
                    metrics.iter().map(|(id, (m, s))| (id.as_str(), period.value(m, s))).collect();
                Expr::new(expression, &vars).eval()
            }
        }
    }

    /// Whether a value crosses the threshold.
    pub fn breaches(&self, value: f64) -> bool {
        match self.comparison.as_str() {
            "GreaterThanThreshold" => value > self.threshold,
            "GreaterThanOrEqualToThreshold" => value >= self.threshold,
            "LessThanThreshold" => value < self.threshold,
            "LessThanOrEqualToThreshold" => value <= self.threshold,
            other => panic!("{}: comparison {other} is not evaluated here", self.logical_id),
        }
    }

    /// The state after the last `EvaluationPeriods` of `periods` (oldest first), as CloudWatch
    /// decides it: ALARM when `DatapointsToAlarm` of them breach, missing data per `TreatMissingData`
    /// (`missing` and `ignore`: left out; too few datapoints keeps the state: here, insufficient).
    pub fn state(&self, periods: &[Period]) -> State {
        let window = &periods[periods.len().saturating_sub(self.evaluation_periods)..];
        let mut breaching = 0;
        let mut present = 0;
        for p in window {
            match (self.value(p), self.treat_missing.as_str()) {
                (Some(v), _) => {
                    present += 1;
                    breaching += usize::from(self.breaches(v));
                }
                (None, "breaching") => {
                    present += 1;
                    breaching += 1;
                }
                (None, "notBreaching") => present += 1,
                (None, _) => {}
            }
        }
        if breaching >= self.datapoints_to_alarm {
            State::Alarm
        } else if present == 0 {
            State::InsufficientData
        } else {
            State::Ok
        }
    }
}

/// Metric math, as much as the template uses. A missing operand makes the result missing, except
/// in `MAX`/`SUM` over an array, which leave missing series out (as CloudWatch does).
struct Expr<'a> {
    tokens: Vec<String>,
    pos: usize,
    vars: &'a HashMap<&'a str, Option<f64>>,
}

impl<'a> Expr<'a> {
    fn new(text: &str, vars: &'a HashMap<&'a str, Option<f64>>) -> Self {
        let re = regex::Regex::new(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+(\.[0-9]+)?|>=|<=|==|!=|[-+*/(),\[\]<>]").unwrap();
        Self { tokens: re.find_iter(text).map(|m| m.as_str().to_string()).collect(), pos: 0, vars }
    }

    fn eval(mut self) -> Option<f64> {
        let v = self.comparison();
        assert_eq!(self.pos, self.tokens.len(), "metric math not understood: {:?}", self.tokens);
        v
    }

    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.pos).map(String::as_str)
    }

    fn take(&mut self, want: &str) {
        assert_eq!(self.peek(), Some(want), "metric math: expected {want} in {:?}", self.tokens);
        self.pos += 1;
    }

    fn comparison(&mut self) -> Option<f64> {
        let left = self.sum();
        let op = match self.peek() {
            Some(op @ (">" | "<" | ">=" | "<=" | "==" | "!=")) => op.to_string(),
            _ => return left,
        };
        self.pos += 1;
        let right = self.sum();
        let (l, r) = (left?, right?);
        let holds = match op.as_str() {
            ">" => l > r,
            "<" => l < r,
            ">=" => l >= r,
            "<=" => l <= r,
            "==" => l == r,
            _ => l != r,
        };
        Some(if holds { 1.0 } else { 0.0 })
    }

    fn sum(&mut self) -> Option<f64> {
        let mut v = self.product();
        while let Some(op @ ("+" | "-")) = self.peek() {
            let plus = op == "+";
            self.pos += 1;
            let r = self.product();
            v = v.zip(r).map(|(a, b)| if plus { a + b } else { a - b });
        }
        v
    }

    fn product(&mut self) -> Option<f64> {
        let mut v = self.atom();
        while let Some(op @ ("*" | "/")) = self.peek() {
            let times = op == "*";
            self.pos += 1;
            let r = self.atom();
            v = v.zip(r).map(|(a, b)| if times { a * b } else { a / b });
        }
        v
    }

    fn atom(&mut self) -> Option<f64> {
        let token = self.peek().expect("metric math ends early").to_string();
        self.pos += 1;
        if token == "(" {
            let v = self.comparison();
            self.take(")");
            return v;
        }
        if let Ok(n) = token.parse::<f64>() {
            return Some(n);
        }
        match token.as_str() {
            "IF" => {
                self.take("(");
                let cond = self.comparison();
                self.take(",");
                let then = self.comparison();
                self.take(",");
                let otherwise = self.comparison();
                self.take(")");
                cond.and_then(|c| if c != 0.0 { then } else { otherwise })
            }
            "MAX" | "SUM" => {
                self.take("(");
                self.take("[");
                let mut items = vec![self.comparison()];
                while self.peek() == Some(",") {
                    self.pos += 1;
                    items.push(self.comparison());
                }
                self.take("]");
                self.take(")");
                let present: Vec<f64> = items.into_iter().flatten().collect();
                if present.is_empty() {
                    None
                } else if token == "MAX" {
                    Some(present.into_iter().fold(f64::MIN, f64::max))
                } else {
                    Some(present.into_iter().sum())
                }
            }
            id => {
                *self.vars.get(id).unwrap_or_else(|| panic!("metric math names {id}, which is no metric of the alarm"))
            }
        }
    }
}
