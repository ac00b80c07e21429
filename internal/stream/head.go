package stream

import (
	"net/http"
	"net/textproto"
	"slices"
	"time"

	"golang.org/x/net/http/httpguts"
)

// headerExcluded lists the response headers that would contradict the
// framing of a hijacked stream, whose body ends when the connection closes.
var headerExcluded = map[string]bool{
	"Connection":        true,
	"Content-Length":    true,
	"Keep-Alive":        true,
	"Trailer":           true,
	"Transfer-Encoding": true,
	"Upgrade":           true,
}

// responseHead returns the head of a 200 response with hdr's fields in
// sorted order (values trimmed, with CR and LF replaced by spaces, as
// net/http writes them; fields with invalid names are left out), a Date
// when hdr has none, and Connection: close. It is built directly rather
// than with http.Header.WriteSubset, which costs a strings.Replacer pass
// per value: every stream's connect writes one.
func responseHead(hdr http.Header) []byte {
	var keyBuf [16]string
	keys := keyBuf[:0]
	size := len("HTTP/1.1 200 OK\r\nDate: Mon, 02 Jan 2006 15:04:05 GMT\r\nConnection: close\r\n\r\n")
	for k, vv := range hdr {
		if headerExcluded[k] || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		keys = append(keys, k)
		for _, v := range vv {
			size += len(k) + len(": \r\n") + len(v)
		}
	}
	slices.Sort(keys)
	b := make([]byte, 0, size)
	b = append(b, "HTTP/1.1 200 OK\r\n"...)
	for _, k := range keys {
		for _, v := range hdr[k] {
			b = append(b, k...)
			b = append(b, ": "...)
			for _, c := range []byte(textproto.TrimString(v)) {
				if c == '\r' || c == '\n' {
					c = ' '
				}
				b = append(b, c)
			}
			b = append(b, "\r\n"...)
		}
	}
	if _, ok := hdr["Date"]; !ok {
		b = append(b, "Date: "...)
		b = appendHTTPDate(b, time.Now())
		b = append(b, "\r\n"...)
	}
	return append(b, "Connection: close\r\n\r\n"...)
}

// appendHTTPDate appends t in http.TimeFormat, without the general
// formatter (as net/http does for its own Date headers).
func appendHTTPDate(b []byte, t time.Time) []byte {
	const days = "SunMonTueWedThuFriSat"
	const months = "JanFebMarAprMayJunJulAugSepOctNovDec"
	t = t.UTC()
	yy, mm, dd := t.Date()
	hh, mn, ss := t.Clock()
	day, mon := days[3*t.Weekday():], months[3*(mm-1):]
	return append(b,
		day[0], day[1], day[2], ',', ' ',
		byte('0'+dd/10), byte('0'+dd%10), ' ',
		mon[0], mon[1], mon[2], ' ',
		byte('0'+yy/1000), byte('0'+(yy/100)%10), byte('0'+(yy/10)%10), byte('0'+yy%10), ' ',
		byte('0'+hh/10), byte('0'+hh%10), ':',
		byte('0'+mn/10), byte('0'+mn%10), ':',
		byte('0'+ss/10), byte('0'+ss%10), ' ',
		'G', 'M', 'T')
}
