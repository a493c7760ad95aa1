//! The synthetic records' promises: the schema's real columns, levels and codes, values that parse
//! by their column, and different seeds giving different rows.

use super::*;

#[test]
fn tables_name_real_columns_levels_and_codes() {
    let levels_of = |name: &str| match schema::column(name).map(|c| c.kind) {
        Some(Kind::Categorical { levels, .. }) => levels,
        other => panic!("{name}: not a categorical column of the schema: {other:?}"),
    };
    for s in SHARES {
        let levels = levels_of(s.column);
        for (level, _) in s.levels {
            assert!(levels.contains(level), "{}: {level}", s.column);
        }
        let total: f64 = s.levels.iter().map(|(_, p)| p).sum::<f64>() + s.missing;
        assert!((98.0..=100.5).contains(&total), "{}: {total}", s.column);
    }
    for (name, _) in DRUG_SHARES {
        assert!(levels_of(name).contains(&"Steady"), "{name}");
    }
    for name in PER_PATIENT.iter().chain([&DISCHARGE]) {
        levels_of(name);
    }
    for (code, _) in DISCHARGE_RISK {
        assert!(levels_of(DISCHARGE).contains(code), "{code}");
    }
    for (name, _) in COUNTS {
        assert!(
            matches!(
                schema::column(name).map(|c| c.kind),
                Some(Kind::Integer { .. })
            ),
            "{name}"
        );
    }
    for d in DIAGNOSES {
        assert_eq!(schema::column(d.column).map(|c| c.kind), Some(Kind::Icd9));
        for (code, _) in d.codes {
            assert!(schema::is_icd9(code), "{code}");
        }
    }
    for code in TAIL_CODES {
        assert!(schema::is_icd9(code), "{code}");
    }
}

#[test]
fn every_generated_value_parses_by_its_column() {
    let mut g = Generator::new(3, 3000);
    for _ in 0..3000 {
        let fields = g.next_fields();
        assert_eq!(fields.len(), COLUMNS.len());
        for (column, raw) in COLUMNS.iter().zip(&fields) {
            assert!(column.parse(raw).is_ok(), "{}: {raw:?}", column.name);
        }
    }
}

#[test]
fn seeds_differ_in_both_halves() {
    let first = |seed| Generator::new(seed, 10).next_fields();
    assert_eq!(first(7), first(7));
    assert_ne!(first(7), first(8));
    assert_ne!(first(7), first(7 | (1 << 40)));
}
