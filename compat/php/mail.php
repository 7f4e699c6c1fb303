<?php
// compat/php/mail.php TO SUBJECT BODY HEADERS [PARAMS]: one call of PHP's
// mail() (sendmail_path comes from -d on php's command line); prints
// {"result": true|false} as JSON.
$a = $argv;
if (count($a) > 5) {
    $r = mail($a[1], $a[2], $a[3], $a[4], $a[5]);
} else {
    $r = mail($a[1], $a[2], $a[3], $a[4]);
}
echo json_encode(["result" => $r]), "\n";
