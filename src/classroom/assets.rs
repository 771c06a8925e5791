//! The pages, their scripts and styles, and the QR code of the join URL:
//! all compiled into the binary, so a classroom works with no network
//! beyond the room's own (the Content-Security-Policy forbids anything
//! from elsewhere).

pub const PROJECTOR_HTML: &str = include_str!("assets/projector.html");
pub const JOIN_HTML: &str = include_str!("assets/join.html");
const STYLE_CSS: &str = include_str!("assets/classroom.css");
const PROJECTOR_JS: &str = include_str!("assets/projector.js");
const JOIN_JS: &str = include_str!("assets/join.js");
const COMMON_JS: &str = include_str!("assets/common.js");

/// Everything from this server, nothing from anywhere else.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// An asset by its file name: (content type, body).
pub fn file(name: &str) -> Option<(&'static str, &'static str)> {
    Some(match name {
        "classroom.css" => ("text/css; charset=utf-8", STYLE_CSS),
        "projector.js" => ("text/javascript; charset=utf-8", PROJECTOR_JS),
        "join.js" => ("text/javascript; charset=utf-8", JOIN_JS),
        "common.js" => ("text/javascript; charset=utf-8", COMMON_JS),
        _ => return None,
    })
}

/// The QR code of `url`, as SVG.
pub fn qr_svg(url: &str) -> Result<String, String> {
    let code = qrcode::QrCode::new(url.as_bytes())
        .map_err(|e| format!("cannot make a QR code of {url}: {e}"))?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_name_only_their_own_assets() {
        for page in [PROJECTOR_HTML, JOIN_HTML] {
            assert!(!page.contains("http://") && !page.contains("https://"));
            for src in page
                .split("src=\"")
                .skip(1)
                .chain(page.split("href=\"").skip(1))
            {
                let target = src.split('"').next().unwrap_or_default();
                let file = target.trim_start_matches("/assets/");
                assert!(
                    target.starts_with('/')
                        && (file.ends_with(".svg") || super::file(file).is_some()),
                    "{target}"
                );
            }
        }
    }

    #[test]
    fn the_qr_code_is_an_svg() {
        let svg = qr_svg("http://192.168.1.20:8080/join").unwrap();
        assert!(svg.contains("<svg") && svg.contains("</svg>"));
    }
}
