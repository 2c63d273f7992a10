package gateway

import (
	"fmt"
	"html"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// accessLog writes one access-log line and reports the event to OnAction.
// request is the quoted part ("GET /x?y", "WSCONNECT /chat/"); status and
// size are written as "-" when negative or zero.
func (s *Server) accessLog(protocol, action, request string, d ActionDetails, status int, size int64) {
	if s.OnAction != nil {
		s.OnAction(protocol, action, d)
	}
	if s.AccessLog == nil {
		return
	}
	client := d.Client
	if client == "" {
		client = "None"
	}
	st, sz := "-", "-"
	if status > 0 {
		st = strconv.Itoa(status)
	}
	if size > 0 {
		sz = strconv.FormatInt(size, 10)
	}
	b := make([]byte, 0, 96+len(request))
	b = append(b, client...)
	b = append(b, " - - ["...)
	b = time.Now().AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, "] \""...)
	b = append(b, request...)
	b = append(b, "\" "...)
	b = append(b, st...)
	b = append(b, ' ')
	b = append(b, sz...)
	b = append(b, '\n')
	s.logMu.Lock()
	_, err := s.AccessLog.Write(b)
	s.logMu.Unlock()
	if err != nil {
		s.log.Warn("writing the access log failed", "error", err)
	}
}

// errorPage is the body of an error response: an HTML page whose title and
// heading are "<code> <reason>", with the detail and a footer naming the
// server.
func errorPage(code int, detail string) []byte {
	title := fmt.Sprintf("%d %s", code, http.StatusText(code))
	return []byte("<!DOCTYPE html>\n<html>\n<head><title>" + title + "</title></head>\n<body>\n<h1>" + title +
		"</h1>\n<p>" + html.EscapeString(detail) + "</p>\n<footer>" + ServerName + "</footer>\n</body>\n</html>\n")
}

// writeErrorPage answers with an error page and closes the connection
// after it (Connection: close, which net/http honours when it is the first
// Connection value; others such as 426's "Upgrade" follow it). It returns
// the body size.
func writeErrorPage(w http.ResponseWriter, code int, detail string) int64 {
	body := errorPage(code, detail)
	h := w.Header()
	conn := []string{"close"}
	for _, v := range h.Values("Connection") {
		if !strings.EqualFold(v, "close") {
			conn = append(conn, v)
		}
	}
	h["Connection"] = conn
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	n, _ := w.Write(body)
	return int64(n)
}
