#[test]
fn peer() {
    let text = std::fs::read_to_string("/tmp/tk/nb/text2.txt").unwrap();
    let tok = mistralrs_core::Tokenizer::from_gguf_path(
        "/tmp/mrs-cache/models/SmolLM2-135M-Instruct.Q4_1.gguf".as_ref(),
    )
    .unwrap();
    for (file, parse) in [("special", true), ("plain", false)] {
        let ours = tok.encode(&text, false, parse).unwrap();
        let peer: Vec<u32> = std::fs::read_to_string(format!("/tmp/tk/nb/smol.{file}.ids"))
            .unwrap()
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        let first = ours.iter().zip(&peer).position(|(a, b)| a != b);
        println!(
            "{file}: ours {} peer {} same {} {:?}",
            ours.len(),
            peer.len(),
            ours == peer,
            first
        );
        println!(
            "tail ours {:?}\ntail peer {:?}",
            &ours[ours.len() - 25..],
            &peer[peer.len() - 25..]
        );
    }
    println!(
        "bos {:?} add_bos {} eos {:?} kind {}",
        tok.bos_id(),
        tok.add_bos(),
        tok.eos_ids(),
        tok.model_kind()
    );
}
