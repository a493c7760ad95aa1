//! Helpers shared by the model tests: a seeded synthetic data set with a planted signal.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use readmit_ml::matrix::Matrix;

/// xorshift64*: the tests' own generator, independent of the library's.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-300);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// Columns: 6 standardised continuous (x0..x5), 4 small integer counts (c0..c3), 8 binary
/// indicators (b0..b7). The log-odds of the label are linear in some, with an interaction and a
/// threshold effect for the trees to find; the base rate is near the real data's 11%.
pub fn synthetic(n_rows: usize, seed: u64) -> (Matrix, Vec<bool>) {
    let (x, y, _) = synthetic_with_truth(n_rows, seed);
    (x, y)
}

/// [`synthetic`] plus each row's true P(label), the ceiling any model can reach.
pub fn synthetic_with_truth(n_rows: usize, seed: u64) -> (Matrix, Vec<bool>, Vec<f32>) {
    let mut rng = Rng::new(seed);
    let n_cols = 18;
    let mut data = Vec::with_capacity(n_rows * n_cols);
    let mut labels = Vec::with_capacity(n_rows);
    let mut truth = Vec::with_capacity(n_rows);
    for _ in 0..n_rows {
        let x: Vec<f64> = (0..6).map(|_| rng.normal()).collect();
        let c: Vec<f64> = (0..4).map(|_| (rng.uniform() * 6.0).floor()).collect();
        let b: Vec<f64> = (0..8)
            .map(|k| f64::from(u8::from(rng.uniform() < 0.15 + 0.05 * k as f64)))
            .collect();
        let z = -2.6 + 0.7 * x[0] - 0.5 * x[1]
            + 0.6 * x[2] * x[3]
            + if x[4] > 0.8 { 0.9 } else { 0.0 }
            + 0.25 * c[0]
            + 0.8 * b[0]
            - 0.6 * b[1];
        let p = 1.0 / (1.0 + (-z).exp());
        truth.push(p as f32);
        labels.push(rng.uniform() < p);
        data.extend(x.iter().chain(&c).chain(&b).map(|&v| v as f32));
    }
    let names = (0..6)
        .map(|j| format!("x{j}"))
        .chain((0..4).map(|j| format!("c{j}")))
        .chain((0..8).map(|j| format!("b{j}")))
        .collect();
    (
        Matrix::new(n_rows, n_cols, data, names).unwrap(),
        labels,
        truth,
    )
}

/// The rows `range` of `x` as a new matrix.
pub fn rows(x: &Matrix, range: std::ops::Range<usize>) -> Matrix {
    let data = x.data[range.start * x.n_cols..range.end * x.n_cols].to_vec();
    Matrix::new(range.len(), x.n_cols, data, x.names.clone()).unwrap()
}

/// The Python venv with onnxruntime, numpy and onnx, created on first use: `READMIT_VENV`, or
/// `/root/.cache/readmit/venv`.
pub fn python() -> Result<PathBuf, String> {
    let venv = std::env::var_os("READMIT_VENV")
        .map_or_else(|| PathBuf::from("/root/.cache/readmit/venv"), PathBuf::from);
    let python = venv.join("bin/python");
    let ready = |py: &Path| {
        Command::new(py)
            .args(["-c", "import onnxruntime, numpy, onnx"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if python.exists() && ready(&python) {
        return Ok(python);
    }
    let run = |cmd: &mut Command| -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)))
        }
    };
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "onnxruntime",
        "numpy",
        "onnx",
    ]))?;
    if ready(&python) {
        Ok(python)
    } else {
        Err("onnxruntime still cannot be imported after installing it".to_owned())
    }
}

#[cfg(feature = "runtime")]
fn write_f32(path: &Path, values: &[f32]) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

/// Exports each model, scores `x` with tract and in memory, and has `tests/onnx_parity.py`
/// check the files with onnx.checker and onnxruntime. Without Python this fails under CI (which
/// must prove parity) and is skipped, saying why, elsewhere.
#[cfg(feature = "runtime")]
pub fn check_with_onnxruntime(
    cases: &[(&str, &readmit_ml::models::Model)],
    x: &Matrix,
    tolerance: f32,
) {
    use readmit_ml::onnx::to_onnx;
    use readmit_ml::runtime::LoadedModel;

    let python = match python() {
        Ok(p) => p,
        Err(reason) if std::env::var_os("CI").is_some() => {
            panic!("CI is set but onnxruntime is unavailable: {reason}")
        }
        Err(reason) => {
            println!("SKIPPED onnxruntime parity: {reason}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let mut manifest = Vec::new();
    for &(name, model) in cases {
        let case_dir = dir.path().join(name);
        std::fs::create_dir(&case_dir).unwrap();
        std::fs::write(case_dir.join("model.onnx"), to_onnx(model).unwrap()).unwrap();
        let loaded = LoadedModel::load(&case_dir.join("model.onnx")).unwrap();
        write_f32(&case_dir.join("features.f32"), &x.data);
        write_f32(&case_dir.join("tract.f32"), &loaded.predict(x).unwrap());
        write_f32(
            &case_dir.join("memory.f32"),
            &model.predict_proba(x).unwrap(),
        );
        manifest.push(serde_json::json!({
            "name": name,
            "model": format!("{name}/model.onnx"),
            "features": format!("{name}/features.f32"),
            "tract": format!("{name}/tract.f32"),
            "memory": format!("{name}/memory.f32"),
            "rows": x.n_rows,
            "cols": x.n_cols,
        }));
    }
    let path = dir.path().join("manifest.json");
    let body = serde_json::json!({ "tolerance": tolerance, "cases": manifest });
    std::fs::write(&path, body.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx_parity.py");
    let out = Command::new(python)
        .arg(script)
        .arg(&path)
        .output()
        .unwrap();
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "onnx_parity.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
