//! The JSON Schema of `result.json` in `schemas/` at the repository root is generated from
//! `RunResult`; this test fails when the two drift apart. Rewrite the file with
//! `UPDATE_SCHEMAS=1 cargo test -p orch-worker --test bundle_schema`.

use std::path::{Path, PathBuf};

use orch_worker::bundle::result_schema;

fn schema_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/result.schema.json")
}

#[test]
fn the_shipped_result_schema_matches_the_one_generated_from_run_result() {
    let path = schema_path();
    let generated = result_schema();
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::create_dir_all(path.parent().expect("the schema file has a parent"))
            .expect("create the schemas directory");
        std::fs::write(&path, &generated).expect("write the schema file");
        return;
    }
    let shipped = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        shipped == generated,
        "{} is out of date with `RunResult`: run \
         `UPDATE_SCHEMAS=1 cargo test -p orch-worker --test bundle_schema` and commit the result",
        path.display()
    );
}
