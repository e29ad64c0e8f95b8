/// Like `assert_eq!` for text, but shows both sides whole, one above the other, so a
/// difference in a long line (a CSV header, a table) is easy to spot.
#[macro_export]
macro_rules! eqnice {
    ($expected:expr, $got:expr $(,)?) => {{
        let expected: &str = &$expected;
        let got: &str = &$got;
        if expected != got {
            panic!(
                "\n\n==== expected ====\n{}\n==== got ====\n{}\n==================\n",
                expected, got
            );
        }
    }};
}
