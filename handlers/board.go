package handlers

import (
	"embed"
	"io/fs"
	"net/http"

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
	assets := http.StripPrefix("/board/", http.FileServerFS(sub))
	e.GET("/board/*", func(c echo.Context) error {
		c.Response().Header().Set(echo.HeaderCacheControl, "no-cache")
		assets.ServeHTTP(c.Response(), c.Request())
		return nil
	})
}
