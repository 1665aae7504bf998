package handlers

import (
	"embed"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
)

//go:embed board
var boardFS embed.FS

// registerBoard serves the live board: the page at / behind auth, its
// script and style under /board/ without (they hold no data, and a wall
// screen opened with ?access_token= could not send the token for them).
func registerBoard(e *echo.Echo, auth echo.MiddlewareFunc) {
	sub, _ := fs.Sub(boardFS, "board")
	page, _ := fs.ReadFile(sub, "index.html")
	e.GET("/", func(c echo.Context) error {
		c.Response().Header().Set(echo.HeaderCacheControl, "no-cache")
		c.Response().Header().Set("Content-Security-Policy",
			"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'")
		return c.HTMLBlob(http.StatusOK, page)
	}, auth)
	e.GET("/board/*", func(c echo.Context) error {
		// Only names of the embedded files: a path that does not decode,
		// is not UTF-8 or climbs out is not one of them.
		name, err := url.PathUnescape(strings.TrimPrefix(c.Request().URL.EscapedPath(), "/board/"))
		if err != nil || !utf8.ValidString(name) || !fs.ValidPath(name) || name == "." {
			return echo.NewHTTPError(http.StatusNotFound, "not found")
		}
		if st, err := fs.Stat(sub, name); err != nil || st.IsDir() {
			return echo.NewHTTPError(http.StatusNotFound, "not found")
		}
		c.Response().Header().Set(echo.HeaderCacheControl, "no-cache")
		http.ServeFileFS(c.Response(), c.Request(), sub, name)
		return nil
	})
}
