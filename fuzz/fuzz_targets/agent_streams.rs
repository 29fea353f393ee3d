//! Each agent CLI's stream parser (`orch_agents::cli::Dialect`): a line in, events out, never an
//! error, never a panic; what the ACP client writes back is JSON. The first byte picks the
//! dialect, the rest is the CLI's stdout, split into lines.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use orch_agents::cli::{
    AcpClient, ClaudeParser, CodexParser, CommandParser, Dialect, GeminiParser, JsonlParser,
    OpenCodeParser,
};
use orch_agents::pricing::Price;

fn dialect(selector: u8) -> Dialect {
    let price = Price {
        input_per_mtok: 3.0,
        output_per_mtok: 15.0,
    };
    match selector % 7 {
        0 => Dialect::Claude(ClaudeParser::default()),
        1 => Dialect::Codex(CodexParser::new(Some(price))),
        2 => Dialect::OpenCode(OpenCodeParser::default()),
        3 => Dialect::Gemini(GeminiParser::new(Some(price))),
        4 => Dialect::Text(CommandParser::default()),
        5 => Dialect::Jsonl(JsonlParser::default()),
        _ => Dialect::Acp(AcpClient::new("fix the bug", "/work/tree", None).priced(
            Some("model"),
            &BTreeMap::from([("model".to_owned(), price)]),
        )),
    }
}

fn check_outgoing(dialect: &mut Dialect) {
    for line in dialect.take_outgoing() {
        assert!(
            !line.contains('\n'),
            "an outgoing message spans lines: {line:?}"
        );
        if let Err(error) = serde_json::from_str::<serde_json::Value>(&line) {
            panic!("an outgoing message is not JSON ({error}): {line:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stdout)) = data.split_first() else {
        return;
    };
    let mut dialect = dialect(selector);
    check_outgoing(&mut dialect);
    for line in String::from_utf8_lossy(stdout).split('\n') {
        let _events = dialect.line(line);
        check_outgoing(&mut dialect);
    }
    let _events = dialect.finish();
    check_outgoing(&mut dialect);
});
