//! ISO 4217 alpha-3 codes of currencies (funds codes included; the X-codes for metals,
//! bond units, testing and "no currency" excluded, as nobody pays in them).

const CODES: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD \
BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR \
FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF \
KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD \
NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL \
SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND \
VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG ZWL";

pub fn is_iso4217(code: &str) -> bool {
    code.len() == 3
        && code.bytes().all(|b| b.is_ascii_uppercase())
        && CODES.split(' ').any(|c| c == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_real_currencies_only() {
        for ok in ["NOK", "EUR", "USD", "SEK", "JPY"] {
            assert!(is_iso4217(ok), "{ok}");
        }
        for bad in ["nok", "NOKK", "XXX", "XTS", "XAU", "ABC", "", "N0K"] {
            assert!(!is_iso4217(bad), "{bad}");
        }
    }
}
