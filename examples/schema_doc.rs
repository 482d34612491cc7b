//! Prints the field tables of `docs/metrics.md` from the schema table (`src/schema.rs`), one
//! per measurement, for pasting into the page when a field changes. The unit test
//! `schema::tests::docs_metrics_field_tables_are_the_schema` fails until the page matches.
//!
//! Usage: `cargo run --example schema_doc`

fn main() {
    for m in vmtel::schema::MEASUREMENTS {
        let devtype = m
            .devtype
            .map(|d| format!(",devtype={d}"))
            .unwrap_or_default();
        println!("{}{devtype}\n", m.name);
        println!("| field | type | unit | source |\n|---|---|---|---|");
        print!("{}", vmtel::schema::doc_table(m));
        println!();
    }
}
